"""The words of a description in every script (probe 38): scripts without spaces read as pairs
of characters, case and optional diacritics folded, marks that are letters kept, words wholly
of look-alike letters read in their script and in Latin; and the watchlist matching on the same
reading. ASCII descriptions read as they always did."""

from __future__ import annotations

import logging
import re
import unicodedata

import numpy as np
import pytest

from features.families.text import TextModel, TextSnapshot, _tokenize_all, make_vectorizer
from features.families.watchlist import match_terms, parse_watchlist
from features.intake.words import TOKEN_PATTERN, description_words, fold
from features.pipeline.prepare import readable_descriptions


def _words(text: str) -> list[str]:
    (read,), _ = readable_descriptions(np.array([text], dtype=object))
    return description_words(read)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("黑色耐克运动鞋", ["黑色", "色耐", "耐克", "克运", "运动", "动鞋"]),
        ("Nike运动鞋", ["nike", "运动", "动鞋"]),
        ("Gucci女士手提包", ["gucci", "女士", "士手", "手提", "提包"]),
        ("2026新款 鞋", ["新款", "鞋"]),  # a number glued to it is no word; one character is
        ("iphone14手机壳", ["手机", "机壳"]),  # "iphone14" is no word, as in ASCII
        ("전자담배를", ["전자", "자담", "담배", "배를"]),
    ],
)
def test_scripts_without_spaces_are_read_as_pairs_of_characters(text, words) -> None:
    assert _words(text) == words


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("τακτικό μαχαίρι", "ΤΑΚΤΙΚΟ ΜΑΧΑΙΡΙ"),  # capitals carry no tonos
        ("στεροειδή", "ΣΤΕΡΟΕΙΔΗ"),
        ("سكين", "سكّين"),  # a shadda
        ("سيجارة إلكترونية", "سِيجَارَة إِلِكْتْرُونِيَّة"),  # harakat
        ("écouteurs bébé", "ECOUTEURS BEBE"),
        ("straße", "STRASSE"),
        ("كبتاجون ساعة", "كبـتاجون سـاعـــة"),  # tatweels (probe 40)
        ("کتاب", "کـتاب"),  # Persian
        ("مستشفى غذائية", "مستشفي غذائيه"),  # final ى for ي, ه for ة (reading 4)
        ("كتاب يد", "کتاب ید"),  # the Persian keyboard's ک and ی
        ("الله", "ٱلله"),  # the alef wasla
    ],
)
def test_case_and_optional_diacritics_make_no_other_word(one, other) -> None:
    assert set(_words(one)) <= set(_words(other))
    assert set(_words(one))  # and they are words


@pytest.mark.parametrize(
    ("text", "word"),
    [("هَدِيَّة", "هديه"), ("उपहार", "उपहार"), ("подарок", "подарок")],  # ة read as ه
)
def test_a_word_is_whole_whatever_marks_it_carries(text, word) -> None:
    """Cut at every mark, "هَدِيَّة" gave no word and "उपहार" gave "उपह"."""
    assert _words(text) == [word]


def test_a_word_wholly_of_look_alikes_is_read_in_its_script_and_in_latin() -> None:
    assert set(_words("МАК пищевой")) == {"мак", "пищевой", "mak"}
    assert set(_words("КНАТ leaves")) == {"кнат", "leaves", "khat"}
    assert _words("kr\u0430tom") == ["kratom"]  # a mixed word: Latin alone, as before


@pytest.mark.parametrize(
    "text", ["Kratom powder 50g", "x2 iphone14 case", "T-shirt, cotton_blend", "a b cd"]
)
def test_ascii_reads_as_it_always_did(text) -> None:
    assert description_words(text) == re.findall(TOKEN_PATTERN, text.lower())


def test_batch_and_online_read_the_same_words() -> None:
    corpus = np.array(
        ["黑色耐克运动鞋", "ΤΑΚΤΙΚΟ ΜΑΧΑΙΡΙ", "سِيجَارَة", "Kratom powder", "उपहार", "МАК", "سـاعة"],
        dtype=object,
    )
    read, _ = readable_descriptions(corpus)
    inverse, batch, vocabulary = _tokenize_all(read)
    online = make_vectorizer()
    matrix = online.fit_transform(read.tolist())
    assert list(online.get_feature_names_out()) == vocabulary.tolist()
    assert (batch[inverse].toarray() == matrix.toarray()).all()


_LIST = """kind,pattern,category,severity
term,电子烟,tobacco,restricted
term,gucci,counterfeit,restricted
term,μαχαίρι,weapons,restricted
term,سكين,weapons,restricted
term,мак,drugs,restricted
term,mak,drugs,restricted
term,كبتاجون,drugs,prohibited
term,حشـيش,drugs,prohibited
term,حبوب منشطة,drugs,restricted
"""


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("新款电子烟包邮", "电子烟"),
        ("黑色电子烟", "电子烟"),
        ("Gucci女士手提包", "gucci"),
        ("ΤΑΚΤΙΚΟ ΜΑΧΑΙΡΙ", "μαχαίρι"),
        ("سكّين مطبخ", "سكين"),
        ("МАК ПИЩЕВОЙ", "мак"),
        ("حبوب كبـتاجون", "كبتاجون"),  # a tatweel (probe 40)
        ("حبوب كبـــتـاجـون", "كبتاجون"),
        ("كبتاجون", "كبتاجون"),
        ("حشيش", "حشـيش"),  # a term listed with one
        ("حبوب منشطه", "حبوب منشطة"),  # ه written for ة (reading 4)
        ("الحبوب المنشطه", "حبوب منشطة"),  # and with the article
        ("kra\u0640tom", None),  # no such term listed: read "kratom"
        ("makeup kit", None),  # a Latin term inside a Latin word is still no match
        ("女士手提包", None),
    ],
)
def test_the_watchlist_matches_the_description_as_read(text, term) -> None:
    watchlist = parse_watchlist(_LIST, "list.csv")
    (read,), _ = readable_descriptions(np.array([text], dtype=object))
    first, count, _ = match_terms(np.array([read], dtype=object), watchlist)
    named = watchlist.terms[first[0]] if first[0] >= 0 else None
    assert named == term, (text, read, count)


def test_terms_are_named_as_listed() -> None:
    watchlist = parse_watchlist(_LIST, "list.csv")
    assert "μαχαίρι" in watchlist.terms and fold("μαχαίρι") in watchlist.term_index


def _model(tokens: list[str], word_reading: int) -> TextModel:
    v = len(tokens)
    return TextModel(
        tokens=np.array(sorted(tokens)),
        chapter_log_prob=np.zeros((v, 100)),
        chapter_log_prior=np.zeros(100),
        illicit_llr=np.zeros(v),
        illicit_log_prior_odds=0.0,
        word_hit_rate=np.zeros(v),
        token_docs=np.ones(v, dtype=np.int64),
        hs6_vocabulary=np.array(["610910"]),
        pair_keys=np.zeros(0, dtype=np.int64),
        pair_counts=np.zeros(0, dtype=np.int64),
        word_reading=word_reading,
    )


def test_a_text_model_saved_before_this_reading_is_said_on_load(tmp_path, caplog) -> None:
    from features.families.text import Text

    family = Text()
    arrays = _model(["kratom", "黑色耐克运动鞋"], 2).to_arrays()
    del arrays["word_reading"]  # as an earlier version saved it
    np.savez(tmp_path / "text_model.npz", **arrays)
    with caplog.at_level(logging.WARNING):
        loaded = family.load_fitted(tmp_path)
    assert loaded.model.word_reading == 1
    assert "1 of its 2 words" in caplog.text and "retrain" in caplog.text
    caplog.clear()
    family.save_fitted(TextSnapshot(_model(["kratom", "耐克"], 2)), tmp_path)
    with caplog.at_level(logging.WARNING):
        assert family.load_fitted(tmp_path).model.word_reading == 2
    assert "retrain" not in caplog.text


def test_a_model_of_the_reading_before_the_tatweel_is_said_for_those_words_only(
    tmp_path, caplog
) -> None:
    """Reading 3 drops the tatweel: a reading-2 model's "سـكين" is no word now; its other
    words (Arabic, Chinese pairs) read as they did, and a model without such words is not said.
    Reading 4 folds ة into ه: a reading-3 model's "ساعة" is said the same way."""
    from features.families.text import Text

    family = Text()
    family.save_fitted(TextSnapshot(_model(["سكين", "سـكين", "耐克", "kratom"], 2)), tmp_path)
    with caplog.at_level(logging.WARNING):
        family.load_fitted(tmp_path)
    assert "1 of its 4 words" in caplog.text and "retrain" in caplog.text
    caplog.clear()
    family.save_fitted(TextSnapshot(_model(["ساعة", "سكين", "kratom"], 3)), tmp_path)
    with caplog.at_level(logging.WARNING):
        family.load_fitted(tmp_path)
    assert "1 of its 3 words" in caplog.text and "'ساعة'" in caplog.text
    caplog.clear()
    family.save_fitted(TextSnapshot(_model(["سكين", "耐克", "kratom"], 2)), tmp_path)
    with caplog.at_level(logging.WARNING):
        family.load_fitted(tmp_path)
    assert "retrain" not in caplog.text


# --- probe 39: the variants --------------------------------------------------------------------


def test_thai_is_read_as_pairs_of_letters_with_their_marks() -> None:
    """A Thai phrase was one word: "บุหรี่ไฟฟ้าสีดำ" (black e-cigarette) went green at 0.13."""
    glued, spaced = _words("บุหรี่ไฟฟ้าสีดำ"), _words("บุหรี่ไฟฟ้า สีดำ")
    assert set(_words("บุหรี่ไฟฟ้า")) <= set(glued) and set(_words("บุหรี่ไฟฟ้า")) <= set(spaced)
    assert all(unicodedata.category(w[0]) != "Mn" for w in glued)  # no pair starts with a mark


@pytest.mark.parametrize(
    ("one", "other"),
    [("thuốc lá điện tử", "thuoc la dien tu"), ("kılıç", "KILIÇ"), ("kılıç", "kilic"),
     ("łódka", "lodka")],
)  # fmt: skip
def test_letters_no_decomposition_folds_are_read_as_their_plain_letter(one, other) -> None:
    assert _words(one) == _words(other)


def test_a_turkish_dotless_i_hides_nothing() -> None:
    from features.intake.hidden_text import is_obscured, readable_text

    assert readable_text("sustalı bıçak") == "sustalı bıçak"
    assert not is_obscured("sustalı bıçak")


_PHRASES = """kind,pattern,category
term,电子烟 烟油,tobacco
term,iqos 加热器,tobacco
term,kılıç,weapons
term,บุหรี่ไฟฟ้า,tobacco
term,thuốc lá điện tử,tobacco
term,kratom powder,drugs
"""


@pytest.mark.parametrize(
    ("text", "term"),
    [
        ("电子烟烟油", "电子烟 烟油"),
        ("电子烟 烟油", "电子烟 烟油"),
        ("IQOS加热器", "iqos 加热器"),
        ("KILIÇ", "kılıç"),
        ("ขายบุหรี่ไฟฟ้าราคาถูก", "บุหรี่ไฟฟ้า"),
        ("THUOC LA DIEN TU", "thuốc lá điện tử"),
        ("kratompowder", None),  # Latin words still need their space
        ("kratom-powders", "kratom powder"),
    ],
)
def test_phrases_glued_where_their_script_glues_words(text, term) -> None:
    watchlist = parse_watchlist(_PHRASES, "list.csv")
    (read,), _ = readable_descriptions(np.array([text], dtype=object))
    first, _, _ = match_terms(np.array([read], dtype=object), watchlist)
    assert (watchlist.terms[first[0]] if first[0] >= 0 else None) == term
