"""Text a reader cannot see or tell apart, defined once: what no identifier may hold, what the
auditors' outputs write as escapes, and how a description is read before any feature sees it.

A trader who controls a listing's text controls its seller and consignee ids and its
description. Characters that print as nothing (a soft hyphen, an Arabic letter mark, a Hangul
filler, a variation selector) and letters of another script that look like Latin ones (Cyrillic
"о" for "o") make "SSPLITB" and "S\\u00adSPLITB" two sellers with two histories, and "kratom"
a word no watchlist names (probe 20: a split order went from yellow to green, a steroid
description from red to green). The set was a hand-written list before; it is Unicode's own
now, so the next invisible character is in it already.
"""

from __future__ import annotations

import itertools
import re
import unicodedata

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
    (0xFFF0, 0xFFFB),  # unassigned specials, interlinear annotation
    (0x1BCA0, 0x1BCA3),  # shorthand format controls
    (0x1D173, 0x1D17A),  # musical symbol formats
    (0xE0000, 0xE0FFF),  # tags, variation selectors supplement
)


def _char_class(controls: str) -> str:
    # The marks are in the string as characters, not as regex \u escapes: pandas hands a
    # pattern holding \u to Python's re, one call per cell (3.8 s of a 1M-row build for six
    # identifiers), and one without to pyarrow's RE2 (0.06 s a column), which reads it the same.
    # The controls stay escapes (\x00 as a character would end a C string).
    marks = "".join(chr(a) if a == b else f"{chr(a)}-{chr(b)}" for a, b in HIDDEN_RANGES)
    return f"[{controls}{marks}]"


# Characters no identifier may hold: the controls (C0, DEL, C1) and the hidden marks.
INVISIBLE = _char_class("\\x00-\\x1f\\x7f-\\x9f")
# What a page writes as a visible escape: the same, but for the tab and line breaks it lays out.
PAGE_INVISIBLE = _char_class("\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f")
_HIDDEN = re.compile(_char_class(""))

# The scripts whose letters pass for Latin ones. A word mixing them with Latin is a spoof far
# more often than a name: UTS #39 calls it mixed-script and its restriction levels refuse it.
LOOK_ALIKE_SCRIPTS = ("CYRILLIC", "GREEK")
MIXED_SCRIPT_PROBLEM = (
    "mixes Latin with Cyrillic or Greek letters in one word, which reads as another id "
    "(a look-alike letter)"
)

# Cyrillic and Greek letters that print as a Latin one, as that letter in lower case (a
# description is read case-blind): UTS #39's confusables for the letters of these scripts.
_LOOK_ALIKES = str.maketrans(
    {
        **dict.fromkeys("аА", "a"), **dict.fromkeys("вВ", "b"), **dict.fromkeys("сСϲϹ", "c"),
        **dict.fromkeys("ԁ", "d"), **dict.fromkeys("еЕёЁ", "e"), **dict.fromkeys("һҺ", "h"),
        **dict.fromkeys("іІїЇӀ", "i"), **dict.fromkeys("јЈ", "j"), **dict.fromkeys("кК", "k"),
        **dict.fromkeys("ӏ", "l"), **dict.fromkeys("мМ", "m"), **dict.fromkeys("нН", "h"),
        **dict.fromkeys("оОοΟσ", "o"), **dict.fromkeys("рРρΡ", "p"), **dict.fromkeys("ԛ", "q"),
        **dict.fromkeys("ѕЅ", "s"), **dict.fromkeys("тТτΤ", "t"), **dict.fromkeys("υ", "u"),
        **dict.fromkeys("ѵν", "v"), **dict.fromkeys("Ν", "n"), **dict.fromkeys("ԝ", "w"), **dict.fromkeys("хХχΧ", "x"),
        **dict.fromkeys("уУγΥ", "y"), **dict.fromkeys("Ζ", "z"), **dict.fromkeys("αΑ", "a"),
        **dict.fromkeys("Β", "b"), **dict.fromkeys("εΕ", "e"), **dict.fromkeys("Η", "h"),
        **dict.fromkeys("ιΙ", "i"), **dict.fromkeys("κΚ", "k"), **dict.fromkeys("Μ", "m"),
    }
)  # fmt: skip
_WORD = re.compile(r"\S+")

# The same look-alikes for an identifier's key, case kept (case folding is a mapping's choice,
# ``fold: true``), with the letters of other scripts that print as a Latin capital or small
# letter (Armenian, Cherokee, Latin small capitals) and the dashes that print as a hyphen.
# A whole word in look-alikes ("АВС-123" in Cyrillic) mixes no script, so it is not refused:
# it is keyed as what it prints, one entity with "ABC-123" (UTS #39's skeleton, narrowed to
# the letters that pass for Latin). Two ids that print alike are one seller to an officer.
_ID_LOOK_ALIKES = str.maketrans(
    {
        **dict.fromkeys("АΑᎪᗅ", "A"), **dict.fromkeys("ВΒᏴ", "B"), **dict.fromkeys("СϹᏟ", "C"),
        **dict.fromkeys("ЕΕᎬ", "E"), **dict.fromkeys("НΗᎻ", "H"), **dict.fromkeys("ІΙӀ", "I"),
        **dict.fromkeys("ЈᎫ", "J"), **dict.fromkeys("КΚᏦ", "K"), **dict.fromkeys("МΜᎷ", "M"),
        **dict.fromkeys("Ν", "N"), **dict.fromkeys("ОΟՕ", "O"), **dict.fromkeys("РΡᏢ", "P"),
        **dict.fromkeys("Ԛ", "Q"), **dict.fromkeys("ЅᏚ", "S"), **dict.fromkeys("ТΤᎢ", "T"),
        **dict.fromkeys("Ս", "U"), **dict.fromkeys("ѴᏙ", "V"), **dict.fromkeys("ԜᎳ", "W"),
        **dict.fromkeys("ХΧ", "X"), **dict.fromkeys("ҮΥ", "Y"), **dict.fromkeys("ΖᏃ", "Z"),
        **dict.fromkeys("аα", "a"), **dict.fromkeys("сϲ", "c"), **dict.fromkeys("ԁ", "d"),
        **dict.fromkeys("е", "e"), **dict.fromkeys("һ", "h"), **dict.fromkeys("іι", "i"),
        **dict.fromkeys("ј", "j"), **dict.fromkeys("ӏ", "l"), **dict.fromkeys("оοօ", "o"),
        **dict.fromkeys("рρ", "p"), **dict.fromkeys("ԛ", "q"), **dict.fromkeys("ѕ", "s"),
        **dict.fromkeys("սυ", "u"), **dict.fromkeys("ѵν", "v"), **dict.fromkeys("ԝ", "w"),
        **dict.fromkeys("х", "x"), **dict.fromkeys("уү", "y"),
        **dict.fromkeys("ᴀ", "A"), **dict.fromkeys("ʙ", "B"), **dict.fromkeys("ᴄ", "C"),
        **dict.fromkeys("ᴅ", "D"), **dict.fromkeys("ᴇ", "E"), **dict.fromkeys("ʜ", "H"),
        **dict.fromkeys("ɪ", "I"), **dict.fromkeys("ᴊ", "J"), **dict.fromkeys("ᴋ", "K"),
        **dict.fromkeys("ʟ", "L"), **dict.fromkeys("ᴍ", "M"), **dict.fromkeys("ɴ", "N"),
        **dict.fromkeys("ᴏ", "O"), **dict.fromkeys("ᴘ", "P"), **dict.fromkeys("ʀ", "R"),
        **dict.fromkeys("ꜱ", "S"), **dict.fromkeys("ᴛ", "T"), **dict.fromkeys("ᴜ", "U"),
        **dict.fromkeys("ᴠ", "V"), **dict.fromkeys("ᴡ", "W"), **dict.fromkeys("ᴢ", "Z"),
        **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63", "-"),
    }
)  # fmt: skip


def key_skeleton(text: str) -> str:
    """An identifier (already in NFKC) as the key its entity is known by: every letter that
    prints as a Latin one written as that letter, every dash as a hyphen. ASCII is its own
    key (one ``isascii``)."""
    return text if text.isascii() else text.translate(_ID_LOOK_ALIKES)


def _scripts(word: str) -> set[str]:
    """The scripts of a word's letters, by the first word of their Unicode names."""
    return {unicodedata.name(c, "?").split(" ", 1)[0] for c in word if c.isalpha()}


def _mixes(word: str) -> bool:
    if word.isascii():
        return False
    scripts = _scripts(word)
    return "LATIN" in scripts and any(s in scripts for s in LOOK_ALIKE_SCRIPTS)


STRAY_MARK_PROBLEM = (
    "holds an accent no letter takes (a combining mark left on a Latin letter or digit after "
    "composition), which reads as another id"
)


def _stray_mark(text: str) -> bool:
    """A combining mark (Mn, Me) right after a Latin letter or an ASCII character in text
    already in NFKC: composition gave that letter no accented form ("B" + U+0301), so the mark
    only dresses one id as another. Marks of other scripts (Arabic vowels, Devanagari signs,
    Thai) are their letters' and stay."""
    for before, c in itertools.pairwise(text):
        if unicodedata.category(c) in ("Mn", "Me") and (
            before.isascii() or "LATIN" in unicodedata.name(before, "")
        ):
            return True
    return False


def identifier_look_alike(text: str) -> str | None:
    """Why an identifier (read in NFKC) would pass for another, None when it would not: a
    word mixing Latin with Cyrillic or Greek letters, or a combining mark no Latin letter
    takes. ASCII is answered without a look."""
    if text.isascii():
        return None
    if mixed_script_word(text) is not None:
        return MIXED_SCRIPT_PROBLEM
    if _stray_mark(text):
        return STRAY_MARK_PROBLEM
    return None


def mixed_script_word(text: str) -> str | None:
    """The first whitespace-separated word of ``text`` mixing Latin letters with Cyrillic or
    Greek ones ("SЕLLER" with a Cyrillic Е), None when none does. Words of one script each,
    as in "Ромашка Trading", are names; ASCII text is answered without a look."""
    if text.isascii():
        return None
    return next((w for w in text.split() if _mixes(w)), None)


def readable_text(text: str) -> str:
    """``text`` as a reader sees it, for the features that read words: compatibility forms
    as the letters they are (NFKC: full-width, ligatures), hidden marks dropped (a soft hyphen
    or zero-width space inside "ster\\u00adoid" splits no word), and in a word mixing Latin with
    Cyrillic or Greek letters those letters as the Latin ones they print as ("krаtom"). Words
    wholly in another script are that script's words and stay so. ASCII text is returned as
    is (the common case costs one ``isascii``)."""
    if text.isascii():
        return text
    text = _HIDDEN.sub("", unicodedata.normalize("NFKC", text))
    return _WORD.sub(lambda m: m[0].translate(_LOOK_ALIKES) if _mixes(m[0]) else m[0], text)


def is_obscured(text: str) -> bool:
    """Whether ``readable_text`` reads ``text`` as other words than it holds: hidden marks or
    look-alike letters (not a mere compatibility form, which NFKC alone changes)."""
    if text.isascii():
        return False
    return readable_text(text) != unicodedata.normalize("NFKC", text)
