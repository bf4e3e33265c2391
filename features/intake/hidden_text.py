"""Text a reader cannot see or tell apart, defined once: what no identifier may hold, what the
auditors' outputs write as escapes, the key an identifier's entity is known by, and how a
description is read before any feature sees it.

A trader who controls a listing's text controls its seller and consignee ids and its
description. Characters that print as nothing (a soft hyphen, an Arabic letter mark, a Hangul
filler, a variation selector) and letters of another script that look like Latin ones (Cyrillic
"о" for "o") make "SSPLITB" and "S\\u00adSPLITB" two sellers with two histories, and "kratom"
a word no watchlist names (probe 20: a split order went from yellow to green, a steroid
description from red to green). The set was a hand-written list before; it is Unicode's own
now, so the next invisible character is in it already.

Folded, not refused. Refusing every id with such a character refused real trade (probe 22: a
Persian name's zero-width non-joiner, "Love❤️Store" with its variation selector, a Yoruba
tone mark, "Делта-Trade") and let one listing name stop a day's file; and a wholly Cyrillic
"АВС-123" mixes no script, so no refusal rule sees it. An id is kept as sent and keyed as what
it prints (``key_skeleton``); only controls and bidi controls, which no name needs and which
reorder what an auditor reads, are refused (``ID_REFUSED``), and a declaration id, which keys
the decision itself, holds no hidden character at all (``INVISIBLE``).
"""

from __future__ import annotations

import re
import unicodedata

from features.intake.words import TATWEEL

# Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt, Unicode 15.1): what a
# renderer shows as nothing when it has no glyph for it; the bidi controls are among them.
# Plus the interlinear annotation marks (format characters that hide the text between them)
# and the line and paragraph separators (a line break inside a one-line value).
HIDDEN_RANGES: tuple[tuple[int, int], ...] = (
    (0x00AD, 0x00AD),  # soft hyphen
    (0x034F, 0x034F),  # combining grapheme joiner
    (0x061C, 0x061C),  # Arabic letter mark (bidi)
    (0x115F, 0x1160),  # Hangul fillers
    (0x17B4, 0x17B5),  # Khmer inherent vowels
    (0x180B, 0x180F),  # Mongolian variation selectors, vowel separator
    (0x200B, 0x200F),  # zero-width space, joiners, LRM/RLM
    (0x2028, 0x2029),  # line and paragraph separators
    (0x202A, 0x202E),  # bidi embeddings and overrides
    (0x2060, 0x206F),  # word joiner, invisible operators, bidi isolates, deprecated formats
    (0x3164, 0x3164),  # Hangul filler
    (0xFE00, 0xFE0F),  # variation selectors
    (0xFEFF, 0xFEFF),  # byte-order mark
    (0xFFA0, 0xFFA0),  # half-width Hangul filler
    (0x2800, 0x2800),  # braille pattern blank: a letter that prints as a space
    (0xFFF0, 0xFFFB),  # unassigned specials, interlinear annotation
    (0x1BCA0, 0x1BCA3),  # shorthand format controls
    (0x1D173, 0x1D17A),  # musical symbol formats
    (0xE0000, 0xE0FFF),  # tags, variation selectors supplement
)


def _char_class(controls: str, ranges: tuple[tuple[int, int], ...] = HIDDEN_RANGES) -> str:
    # The marks are in the string as characters, not as regex \u escapes: pandas hands a
    # pattern holding \u to Python's re, one call per cell (3.8 s of a 1M-row build for six
    # identifiers), and one without to pyarrow's RE2 (0.06 s a column), which reads it the same.
    # The controls stay escapes (\x00 as a character would end a C string).
    marks = "".join(chr(a) if a == b else f"{chr(a)}-{chr(b)}" for a, b in ranges)
    return f"[{controls}{marks}]"


_CONTROLS = "\\x00-\\x1f\\x7f-\\x9f"
# Every character a reader cannot see: the controls (C0, DEL, C1) and the hidden marks. No
# declaration id holds one; the auditors' terminals write each as an escape.
INVISIBLE = _char_class(_CONTROLS)
# What a page writes as a visible escape: the same, but for the tab and line breaks it lays out.
PAGE_INVISIBLE = _char_class("\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f")
# What no other identifier may hold: controls, the bidi controls that make an id read backwards
# on a page, line and paragraph separators, interlinear annotation (hides the text it marks).
BIDI_AND_BREAKS = (
    (0x061C, 0x061C), (0x200E, 0x200F), (0x2028, 0x2029), (0x202A, 0x202E),
    (0x2066, 0x2069), (0xFFF9, 0xFFFB),
)  # fmt: skip
ID_REFUSED = _char_class(_CONTROLS, BIDI_AND_BREAKS)
_HIDDEN = re.compile(_char_class(""))
# the hidden characters that print as a blank as wide as a letter or a line (fillers, the
# braille blank, line and paragraph separators): read as the space they show, the others
# (zero-width) as nothing. "kratom<braille blank>powder" reads two words, as it prints.
_BLANKS = re.compile("[\u115f\u1160\u2028\u2029\u2800\u3164\uffa0]")
# hidden marks that spell real words (Persian's non-joiner, a Devanagari conjunct's joiner, an
# emoji's joiner and presentation selector): dropped from words and keys, said of no text
_SPELLING_MARKS = frozenset("\u200c\u200d\ufe0e\ufe0f")

# Letters of other scripts (and Latin's own variants) that print as a Latin letter, as that
# letter: UTS #39's confusables, narrowed to letters, with the dashes that print as a hyphen.
# Case kept: an id keeps its case (folding it is a mapping's choice, ``fold: true``); a
# description is read case-blind anyway.
_LOOK_ALIKES = str.maketrans(
    {
        **dict.fromkeys("АΑᎪꓮⲀ", "A"), **dict.fromkeys("ВΒᏴꓐⲂ", "B"), **dict.fromkeys("СϹᏟꓚⲤ", "C"),
        **dict.fromkeys("Ꭰꓓ", "D"), **dict.fromkeys("ЕΕᎬꓰⲈ", "E"), **dict.fromkeys("ꓝ", "F"),
        **dict.fromkeys("ᏀꓖԌ", "G"), **dict.fromkeys("НΗᎻꓧⲎ", "H"), **dict.fromkeys("ІΙӀꓲⲒ", "I"),
        **dict.fromkeys("ЈᎫꓙ", "J"), **dict.fromkeys("КΚᏦꓗⲔ", "K"), **dict.fromkeys("ᏞꓡⳐ", "L"),
        **dict.fromkeys("МΜᎷꓟⲘ", "M"), **dict.fromkeys("ΝꓠⲚ", "N"), **dict.fromkeys("ОΟՕꓳⲞ", "O"),
        **dict.fromkeys("РΡᏢꓑⲢ", "P"), **dict.fromkeys("Ԛ", "Q"), **dict.fromkeys("ᎡꓣƦ", "R"),
        **dict.fromkeys("ЅᏚꓢ", "S"), **dict.fromkeys("ТΤᎢꓔⲦ", "T"), **dict.fromkeys("Սꓴᑌᑘ", "U"),
        **dict.fromkeys("ѴᏙꓦ", "V"), **dict.fromkeys("ԜᎳꓪ", "W"), **dict.fromkeys("ХΧꓫⲬ", "X"),
        **dict.fromkeys("ҮΥꓬⲨ", "Y"), **dict.fromkeys("ΖᏃꓜ", "Z"),
        **dict.fromkeys("аαɑ", "a"), **dict.fromkeys("сϲⲥ", "c"), **dict.fromkeys("ԁ", "d"),
        **dict.fromkeys("еⲉ", "e"), **dict.fromkeys("ɡց", "g"), **dict.fromkeys("һհ", "h"),
        **dict.fromkeys("іιıɩ", "i"), **dict.fromkeys("ј", "j"), **dict.fromkeys("ӏ", "l"),
        **dict.fromkeys("ո", "n"), **dict.fromkeys("оοօⲟσ", "o"), **dict.fromkeys("рρⲣ", "p"),
        **dict.fromkeys("ԛզ", "q"), **dict.fromkeys("ѕ", "s"), **dict.fromkeys("սυ", "u"),
        **dict.fromkeys("ѵν", "v"), **dict.fromkeys("ԝ", "w"), **dict.fromkeys("хχⲭ", "x"),
        **dict.fromkeys("уүγ", "y"),
        **dict.fromkeys("ᴀ", "A"), **dict.fromkeys("ʙ", "B"), **dict.fromkeys("ᴄ", "C"),
        **dict.fromkeys("ᴅ", "D"), **dict.fromkeys("ᴇ", "E"), **dict.fromkeys("ɢ", "G"),
        **dict.fromkeys("ʜ", "H"), **dict.fromkeys("ɪ", "I"), **dict.fromkeys("ᴊ", "J"),
        **dict.fromkeys("ᴋ", "K"), **dict.fromkeys("ʟ", "L"), **dict.fromkeys("ᴍ", "M"),
        **dict.fromkeys("ɴ", "N"), **dict.fromkeys("ᴏ", "O"), **dict.fromkeys("ᴘ", "P"),
        **dict.fromkeys("ʀ", "R"), **dict.fromkeys("ꜱ", "S"), **dict.fromkeys("ᴛ", "T"),
        **dict.fromkeys("ᴜ", "U"), **dict.fromkeys("ᴠ", "V"), **dict.fromkeys("ᴡ", "W"),
        **dict.fromkeys("ʏ", "Y"), **dict.fromkeys("ᴢ", "Z"),
        **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63", "-"),
    }
)  # fmt: skip
_LOOKS_LATIN = frozenset(k for k in map(chr, _LOOK_ALIKES) if k.isalpha())
# In a description's words, Turkish's dotless ı is a letter of the word, not a disguise:
# "kılıç" read as "kiliç" was said to hide its letters (description.obscured), and a listed
# "kılıç" folded another way never matched (probe 39). ``words.fold`` reads it as i. An id
# keeps it among the look-alikes: "Yıldız" and "Yildiz" are one seller.
_WORD_LOOK_ALIKES = {k: v for k, v in _LOOK_ALIKES.items() if k != ord("ı")}
# a run of letters and the marks on them: a word as a reader reads one ("USB-кабель" is two)
_LETTERS = re.compile(r"(?:[^\W\d_]|[\u0300-\u036f])+")


def _drop_marks_on_latin(text: str) -> str:
    """``text`` without the combining marks (Mn, Me) that sit on a Latin or ASCII character:
    composition (NFKC) gave that letter no accented form ("B" + U+0301), so the mark only
    dresses one id as another. Marks of other scripts (Arabic vowels, Devanagari signs, Thai)
    are their letters'."""
    out: list[str] = []
    base = ""
    for c in text:
        if unicodedata.category(c) in ("Mn", "Me"):
            if base.isascii() or "LATIN" in unicodedata.name(base, ""):
                continue
        else:
            base = c
        out.append(c)
    return "".join(out)


def key_skeleton(text: str) -> str:
    """An identifier (read in NFKC) as the key its entity is known by: zero-width marks
    dropped, blanks read as the space they print (runs of spaces as one, none at the ends), a
    mark composition left on a Latin letter dropped, every letter that prints as a Latin one
    written as that letter, every dash as a hyphen (UTS #39's skeleton, narrowed to what passes
    for Latin). "S<soft hyphen>SPLIT", "АВС-123" in Cyrillic and "ᴀʙᴄ" are the sellers
    "SSPLIT", "ABC-123" and "ABC". ASCII is its own key (one ``isascii``)."""
    if text.isascii():
        return text
    shown = _HIDDEN.sub("", _BLANKS.sub(" ", text))
    return " ".join(_drop_marks_on_latin(shown).translate(_LOOK_ALIKES).split())


def _read_word(word: str) -> tuple[str, str, bool]:
    """A run of letters as read in its own script, as read in Latin, and whether it hid its
    letters: look-alikes in a word that holds Latin letters (a mixed word: "krаtom", "kratᴏm")
    are Latin in both readings, said; a word wholly of look-alikes ("КНАТ", but also the
    Russian "МАК" and the Greek "ΜΑΧΑΙΡΙ") is itself in the first reading and Latin in the
    second, not said. Read as Latin alone, "ΜΑΧΑΙΡΙ" was "maxaipi" and no longer "μαχαίρι"
    (probe 38). Other words are their script's in both."""
    folded = word.translate(_WORD_LOOK_ALIKES)
    if folded == word:
        return word, word, False
    if any(c.isascii() for c in word):
        return folded, folded, True
    if all((c in _LOOKS_LATIN and c != "ı") or not c.isalpha() for c in word):
        return word, folded, False
    return word, word, False


# A joiner (ZWJ, ZWNJ) between two letters of these scripts: no spelling needs one there
# (Persian, Arabic and the Indic scripts do, emoji too), so it is there to hide the word:
# "ana<ZWJ>bolic" and "电<ZWJ>子烟" were read as the word, but not said as a soft hyphen or a
# zero-width space in the same place is (probe 38)
_JOINED_LETTERS = re.compile(r"([^\W\d_])[\u200c\u200d]+(?=([^\W\d_]))")
_NO_JOINER_SCRIPTS = ("LATIN", "CYRILLIC", "GREEK", "CJK", "HIRAGANA", "KATAKANA", "HANGUL")


def _joins_inside_word(normal: str) -> bool:
    """Whether a joiner sits between two letters of a script that never spells with one."""
    if "\u200c" not in normal and "\u200d" not in normal:
        return False
    return any(
        unicodedata.name(a, "").startswith(_NO_JOINER_SCRIPTS)
        and unicodedata.name(b, "").startswith(_NO_JOINER_SCRIPTS)
        for a, b in _JOINED_LETTERS.findall(normal)
    )


# The scripts whose letters a tatweel joins (its Script_Extensions): inside their words it is
# typography, as harakat and Persian's non-joiner are, and said of no text (a title's
# "كـبير", a Hijri year's "١٤٤٥هـ", a justified line's several in one word). Beside a letter of
# any other script nothing joins there: it is put in a word to part it ("kra<tatweel>tom"),
# read as nothing by ``words.fold`` and said, as a soft hyphen in the same place is.
_TATWEEL_SCRIPTS = (
    "ARABIC", "SYRIAC", "MANDAIC", "MANICHAEAN", "ADLAM", "HANIFI ROHINGYA", "PSALTER PAHLAVI",
    "SOGDIAN", "OLD UYGHUR",
)  # fmt: skip


def _stretches_other_script(normal: str) -> bool:
    """Whether a tatweel stands beside a letter (marks between skipped) of a script it does
    not join."""
    if TATWEEL not in normal:
        return False
    beside: list[str] = []
    for i, c in enumerate(normal):
        if c != TATWEEL:
            continue
        for step in (-1, 1):
            j = i + step
            while 0 <= j < len(normal) and unicodedata.category(normal[j]) in ("Mn", "Me"):
                j += step
            beside.append(normal[j] if 0 <= j < len(normal) else "")
    return any(
        c.isalpha() and c != TATWEEL and not unicodedata.name(c, "").startswith(_TATWEEL_SCRIPTS)
        for c in beside
    )


# Between the two readings of a description: no watchlist phrase spans it (a phrase's words
# are apart by spaces, hyphens or underscores)
READINGS_APART = " / "


def _read(text: str) -> tuple[str, bool]:
    normal = unicodedata.normalize("NFKC", text)
    hidden = set(_HIDDEN.findall(normal))
    shown = _HIDDEN.sub("", _BLANKS.sub(" ", normal))
    mixed = twice = False
    latin: list[str] = []

    def word(m: re.Match[str]) -> str:
        nonlocal mixed, twice
        own, as_latin, hid = _read_word(m[0])
        mixed |= hid
        twice |= own != as_latin
        latin.append(as_latin)
        return own

    read = _LETTERS.sub(word, shown)
    if twice:
        # the words wholly of look-alikes read in Latin too ("КНАТ leaves / KHAT leaves"):
        # a watchlist's "khat leaves" and a Russian "мак" both match. The same text's same
        # words, each as read in Latin
        others = iter(latin)
        read += READINGS_APART + _LETTERS.sub(lambda m: next(others), shown)
    return read, (
        mixed
        or bool(hidden - _SPELLING_MARKS)
        or _joins_inside_word(normal)
        or _stretches_other_script(normal)
    )


def readable_text(text: str) -> str:
    """``text`` as a reader sees it, for the features that read words: compatibility forms
    as the letters they are (NFKC: full-width, ligatures), zero-width marks dropped (a soft
    hyphen or zero-width space inside "ster\\u00adoid" splits no word), blanks read as the
    space they print, and look-alike letters read as the Latin ones they print as
    (``_read_word``). ASCII text is returned as is (the common case costs one ``isascii``)."""
    return text if text.isascii() else _read(text)[0]


def is_obscured(text: str) -> bool:
    """Whether ``text`` was written to hide its words: hidden marks other than those that
    spell words, look-alike letters inside a Latin word, or a tatweel beside a letter it does
    not join. Not a compatibility form, not a word wholly in another script, not
    "USB-кабель" or "α-lipoic acid", not a tatweel in an Arabic word ("كبـتاجون")."""
    return False if text.isascii() else _read(text)[1]
