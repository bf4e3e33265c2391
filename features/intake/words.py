"""The words of a description, defined once: what the text models learn from, what the
watchlist matches, in every script.

A description is first read as it prints (``hidden_text.readable_text``); its words are then:
- folded: case (``casefold``: Greek capitals, final sigma, German ß) and the diacritics that
  writers put on or leave off as they please (Latin accents, Greek tonos, Arabic harakat and
  shadda, Hebrew points, Russian ё), and the Arabic tatweel (``TATWEEL``), which only stretches
  the stroke that joins two letters: ``كبـتاجون`` is ``كبتاجون`` (probe 40). ``ΜΑΧΑΙΡΙ`` and ``μαχαίρι``, ``سكّين`` and ``سكين``, ``écouteurs`` and
  ``ecouteurs`` are one word each; with the marks kept a sender hid a word by adding one shadda,
  and capitals (how CN22 forms are filled in) were another word (probe 38);
- whole with their marks where the marks are letters (Devanagari and Thai vowel signs): a word
  cut at every mark lost its pieces shorter than two letters (``उपहार`` read ``उपह``);
- in scripts written without spaces (Chinese, Japanese, Thai, Lao, Khmer, Myanmar; Korean's
  particles glued to the word), overlapping pairs of characters (a letter with its marks): ``黑色耐克运动鞋`` is ``黑色 色耐 耐克 克运 运动 动鞋``, so the
  brand ``耐克`` is a word the model can learn. The run alone was one "word" per phrasing, and
  the Chinese signal was caught at 0.018 against 0.61 for Latin-script text (probe 38). Pairs
  (Lucene's CJK analyser) need no dictionary and no segmenter to install.
ASCII text reads as before (``TOKEN_PATTERN`` on the lowercase text, one ``isascii``): the
common case costs nothing more, and models trained on ASCII descriptions read them unchanged.
"""

from __future__ import annotations

import functools
import re
import unicodedata

# Words of 2+ letters; numbers and sizes are noise ("iphone14", "x2" are no words).
TOKEN_PATTERN = r"(?u)\b[^\W\d_][^\W\d_]+\b"
_ASCII_WORDS = re.compile(TOKEN_PATTERN).findall

# How descriptions are read into words; kept with a text model, so a model of an older reading
# is known (``features.families.text``). 1: before probe 38; 2: probe 38's; 3: the tatweel
# dropped (probe 40: "سـاعة" and "ساعة" were two words); 4: the Arabic letters writers use
# for one another folded (``_ARABIC_VARIANTS``).
WORD_READING = 4

# The tatweel (kashida): no letter, a stretch of the joining stroke that Arabic (and Persian)
# typography puts into a word to justify a line or dress a title ("كـبير"). A word holds it
# or not as the typesetter pleased, so it is no part of the word; kept, one keystroke made a
# listed term another word, for the watchlist and the text models alike (probe 40). Unicode's
# Script_Extensions give it to the other joining scripts too (Syriac, Mandaic...), where it is
# the same stroke: dropped wherever it stands.
TATWEEL = "\u0640"

# Scripts written without spaces between words: Thai, Lao, Myanmar, Khmer (probe 39: a Thai
# phrase was one word), Han (CJK ideographs and their extensions, compatibility ideographs),
# Hiragana, Katakana, Hangul syllables and jamo.
_UNSPACED_RANGES = (
    (0x0E00, 0x0EFF), (0x1000, 0x109F), (0x1100, 0x11FF), (0x1780, 0x17FF), (0x3040, 0x30FF),
    (0x3130, 0x318F), (0x31F0, 0x31FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xA960, 0xA97F),
    (0xAC00, 0xD7AF), (0xD7B0, 0xD7FF), (0xF900, 0xFAFF), (0x20000, 0x2FFFF),
)  # fmt: skip
# Latin letters with a stroke or without a dot, which no decomposition takes to their plain
# letter: Vietnamese đ (listings write "dien" for "điện", probe 39), Polish ł, Nordic ø,
# Maltese ħ, Sami ŧ, Turkish dotless ı ("kılıç" and "kilic"); and the tatweel, read as nothing
# Arabic letters writers put for one another, read as one (as Arabic search engines normalise,
# Larkey's light10): final ى for ي (Egyptian and Sudanese writing: مستشفى / مستشفي), ه for
# ة (غذائية / غذائيه), the alef wasla for alef; and the Persian and Urdu keyboards' ی and ک for
# Arabic ي and ك, so a term listed in one keyboard's letters matches the other's. The hamza
# forms of alef, waw and ya (أ إ آ ؤ ئ) are folded already with the marks (NFD). Kept apart, a
# sender wrote a listed term the other way and no list nor model found it (probe 40).
_ARABIC_VARIANTS = {"ى": "ي", "ة": "ه", "ٱ": "ا", "ی": "ي", "ک": "ك"}
_PLAIN_LETTERS = str.maketrans(
    {"đ": "d", "ł": "l", "ø": "o", "ħ": "h", "ŧ": "t", "ı": "i", TATWEEL: None} | _ARABIC_VARIANTS
)
# Marks writers put on or leave off, whatever letter they sit on: Cyrillic's titlo and
# signs, Hebrew points, Arabic harakat, shadda and Quranic marks.
_DIACRITIC_RANGES = (
    (0x0483, 0x0489), (0x0591, 0x05C7), (0x0610, 0x061A), (0x064B, 0x065F), (0x0670, 0x0670),
    (0x06D6, 0x06ED),
)  # fmt: skip
# The combining diacriticals (accents, tonos, breve...) are optional on Latin and Greek letters
# only: on a Cyrillic letter the breve makes another letter (й is not и); ё is written е by
# most Russian writers, and read so.
_ACCENTS_RANGES = ((0x0300, 0x036F), (0x1AB0, 0x1AFF), (0x1DC0, 0x1DFF), (0x20D0, 0x20FF),
                   (0xFE20, 0xFE2F))  # fmt: skip
_ACCENT_BASES = ("LATIN", "GREEK")


def _ranges_class(ranges: tuple[tuple[int, int], ...]) -> str:
    return "".join(chr(a) if a == b else f"{chr(a)}-{chr(b)}" for a, b in ranges)


_UNSPACED = _ranges_class(_UNSPACED_RANGES)
_DIACRITICS = re.compile(f"[{_ranges_class(_DIACRITIC_RANGES)}]")
_ACCENTED = re.compile(f"(.)([{_ranges_class(_ACCENTS_RANGES)}]+)", re.DOTALL)


def _unaccented(match: re.Match[str]) -> str:
    base = match[1]
    if base.isascii() or unicodedata.name(base, "").startswith(_ACCENT_BASES):
        return base
    return match[0]


_SCRIPT_RUNS = re.compile(f"[{_UNSPACED}]+|[^{_UNSPACED}]+")
_IS_UNSPACED = re.compile(f"[{_UNSPACED}]")


@functools.cache
def _patterns() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """(runs of word characters and combining marks, a word of letters and marks only, a letter
    with the marks on it): built on the first description that is not ASCII (a scan of the
    BMP's categories, ~20 ms)."""
    marks, start = [], None
    for code in range(0x10000):
        is_mark = unicodedata.category(chr(code)) in ("Mn", "Mc", "Me")
        if is_mark and start is None:
            start = code
        elif not is_mark and start is not None:
            marks.append((start, code - 1))
            start = None
    mark_class = _ranges_class(tuple(marks))
    runs = re.compile(f"[\\w{mark_class}]+")
    letters = re.compile(f"[^\\W\\d_](?:[^\\W\\d_]|[{mark_class}])*")
    # Thai vowel and tone marks sit on a consonant: a pair is of two letters with their marks
    units = re.compile(f"[^{mark_class}][{mark_class}]*")
    return runs, letters, units


def fold(text: str) -> str:
    """``text`` case-folded and without the diacritics writers may leave off (``_DIACRITICS``)
    or the tatweel: how words are compared. ASCII: lowercase."""
    if text.isascii():
        return text.lower()
    folded = text.casefold().replace("ё", "е").translate(_PLAIN_LETTERS)
    decomposed = unicodedata.normalize("NFD", folded)
    return unicodedata.normalize("NFC", _ACCENTED.sub(_unaccented, _DIACRITICS.sub("", decomposed)))


def description_words(text: str) -> list[str]:
    """The words of a (readable) description, in order, repeats kept: see the module's doc."""
    if text.isascii():
        return _ASCII_WORDS(text.lower())
    runs, letters, units = _patterns()
    words: list[str] = []
    for run in runs.findall(fold(text)):
        if not _IS_UNSPACED.search(run):
            # a word only if letters (and their marks) alone, 2+ letters: as TOKEN_PATTERN
            if letters.fullmatch(run) and sum(c.isalpha() for c in run) >= 2:
                words.append(run)
            continue
        # a run holding a script without spaces: each script's part apart ("nike运动鞋")
        for part in _SCRIPT_RUNS.findall(run):
            if _IS_UNSPACED.match(part):
                letters_of = units.findall(part)
                words.extend([part] if len(letters_of) == 1 else _pairs(letters_of))
            elif letters.fullmatch(part) and sum(c.isalpha() for c in part) >= 2:
                words.append(part)
    return words


def _pairs(letters: list[str]) -> list[str]:
    return [letters[i] + letters[i + 1] for i in range(len(letters) - 1)]


def unspaced_class() -> str:
    """The characters of the scripts written without spaces, for a regex class: a watchlist
    term sits in them without a word boundary (``电子烟`` in ``新款电子烟包邮``)."""
    return _UNSPACED


def is_character_pair(word: str) -> bool:
    """Whether ``word`` is of a script written without spaces: a pair of characters read out
    of a run (``子烟`` of ``电子烟``), which a person does not read as a word of the text."""
    return bool(_IS_UNSPACED.match(word))


def read_in_pairs(text: str | None) -> bool:
    """Whether ``text`` holds a script written without spaces, whose words are read as pairs
    of characters: a count of its words counts those pairs."""
    return text is not None and not text.isascii() and bool(_IS_UNSPACED.search(text))
