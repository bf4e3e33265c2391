"""Watchlist family: does the declaration name goods on the administration's restricted list?

The description model (``text``) learns words only from inspection results, so a restricted
article nobody has inspected yet is invisible to it. An administration already knows its national
restricted / prohibited articles: this family reads that list as data (``features.watchlist``, a
CSV of ``kind,pattern,category,note`` rows) and matches it against every declaration:
- ``term`` rows: a word or phrase, matched case-insensitively on word boundaries in the
  description, an Arabic one after its attached article or one-letter word too ("الكبتاجون")
  (a declaration without a description has no term features: NaN, not "none");
- ``hs`` rows: an HS code prefix of 2-10 digits (the longest matching prefix wins).
Stateless: batch and online run the same ``compute``; the snapshot keeps a copy of the list the
model was trained with, so the service matches what training matched whatever the file holds now.
The category levels are the list's, fixed in the manifest like any categorical's.
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from features.errors import ParcelriskError
from features.intake.words import fold, unspaced_class
from features.params import FeatureParams, file_sha256
from features.pipeline import history as hist
from features.pipeline.family import Family, History, Rows, SpecContext, Values
from features.pipeline.manifest import FeatureSpec

KINDS = ("term", "hs")
COLUMNS = ("kind", "pattern", "category", "severity", "note")
SEVERITIES = ("restricted", "prohibited")  # empty: restricted
NONE = "none"
STATE_FILE = "watchlist.csv"
TERM = "watchlist_term"
TERM_CATEGORY = "watchlist_term_category"
TERM_COUNT = "watchlist_term_count"
TERM_PROHIBITED = "watchlist_term_prohibited"
HS_CATEGORY = "watchlist_hs_category"
_HS_PATTERN = re.compile(r"\d{2,10}")


@dataclass(frozen=True)
class Watchlist:
    """A restricted-goods list: terms and HS prefixes, each with its category (file order)."""

    terms: tuple[str, ...]  # lower case, single spaces
    term_categories: tuple[str, ...]
    hs_prefixes: tuple[str, ...]
    hs_categories: tuple[str, ...]
    term_prohibited: tuple[bool, ...] = ()  # severity prohibited (else restricted)
    hs_prohibited: tuple[bool, ...] = ()
    notes: tuple[str, ...] = ()  # terms' then HS prefixes' notes, kept for the snapshot copy

    @property
    def categories(self) -> tuple[str, ...]:
        """``none``, then the categories in order of first appearance."""
        return (NONE, *dict.fromkeys((*self.term_categories, *self.hs_categories)))

    @functools.cached_property  # asked on every request (a frozen dataclass keeps a __dict__)
    def term_levels(self) -> tuple[str, ...]:
        """``none``, then each term labelled with its category: ``kratom (drugs)``."""
        return (
            NONE,
            *(f"{t} ({c})" for t, c in zip(self.terms, self.term_categories, strict=True)),
        )

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        notes = iter(self.notes or ("",) * (len(self.terms) + len(self.hs_prefixes)))
        for kind, patterns, categories, prohibited in (
            ("term", self.terms, self.term_categories, self.term_prohibited),
            ("hs", self.hs_prefixes, self.hs_categories, self.hs_prohibited),
        ):
            for pattern, category, banned in zip(patterns, categories, prohibited, strict=True):
                severity = SEVERITIES[int(banned)]
                writer.writerow((kind, pattern, category, severity, next(notes)))
        return out.getvalue()

    @functools.cached_property
    def term_regex(self) -> re.Pattern[str] | None:
        """One alternation of all terms, longest first (``replica gun`` before ``replica``);
        lookarounds instead of ``\\b`` so terms ending in a non-word character still match."""
        if not self.terms:
            return None
        ordered = sorted(self.term_index, key=len, reverse=True)
        # words apart by spaces, hyphens or underscores ("magic-mushrooms", "kratom_powder"),
        # a plural's "s" or "es" after the term ("kratoms"): a listing writes them so, and
        # each was a miss (probe 22); an underscore ends a word as a space does
        # an Arabic term after its attached article or one-letter word ("الكبتاجون"): probe 40
        body = "|".join(_phrase_pattern(t) for t in ordered)
        # a letter of a script written without spaces ends no word: "电子烟" in "新款电子烟包邮",
        # "gucci" in "Gucci女士手提包" were misses (probe 38)
        edge = rf"[^\W_{unspaced_class()}]"
        return re.compile(rf"(?<!{edge})(?:{body})(?:e?s)?(?!{edge})", re.IGNORECASE)

    @functools.cached_property
    def term_index(self) -> dict[str, int]:
        """Each term as descriptions are compared with it (``fold``: case and accents, so
        "μαχαίρι" names "ΜΑΧΑΙΡΙ", probe 38) -> its row; of two that fold alike, the first."""
        index: dict[str, int] = {}
        for i, term in enumerate(self.terms):
            index.setdefault(_folded_term(term), i)
        return index

    @functools.cached_property
    def match_index(self) -> dict[str, int]:
        """``term_index`` by the key a match is looked up by (``_glued``), and by each form an
        Arabic term is written in with its attached words (``_attached_forms``): a term as
        listed names itself before it is another's attached form."""
        index = {_glued(term): i for term, i in self.term_index.items()}
        for term, i in self.term_index.items():
            for form in _attached_forms(term):
                index.setdefault(_glued(form), i)
        return index

    @functools.cached_property
    def hs_index(self) -> dict[str, int]:
        return {p: i for i, p in enumerate(self.hs_prefixes)}


_UNSPACED_LETTER = re.compile(f"[{unspaced_class()}]")
_BESIDE_UNSPACED = re.compile(f"(?<=[{unspaced_class()}]) | (?=[{unspaced_class()}])")


# Arabic writes its article and its one-letter conjunctions and prepositions attached to the
# next word ("حبوب الكبتاجون", "بالكبتاجون", "وكبتاجون"), where English puts a space: before a
# listed term that starts with an Arabic letter they are read as such, as a plural ending is
# read after an English one (probe 40). The article's forms before any term; a lone letter only
# before a term whose first word has 3 letters or more (as Larkey's light stemmer strips "و"),
# so that "لبن" (milk) does not name "بن" (coffee) nor "بسم" "سم" (poison). A phrase's later
# words may take the article too, as a definite phrase does ("الحبوب المنشطة" for "حبوب منشطة").
# Arabic letters before Arabic words only: they make no match in another script.
_ARABIC_ARTICLES = ("وال", "بال", "كال", "فال", "لل", "ال")
_ARABIC_LETTER_CLITICS = ("و", "ب", "ل", "ف", "ك")
_LETTERS_AFTER_A_LETTER_CLITIC = 3
_ARTICLE = "ال"


def _folded_term(term: str) -> str:
    """A listed term as descriptions are compared with it: folded, one space between words
    (a tatweel or a mark alone between two is no word)."""
    return " ".join(fold(term).split())


def _is_arabic(word: str) -> bool:
    return unicodedata.name(word[0], "").startswith("ARABIC LETTER")


def _clitics(word: str) -> tuple[str, ...]:
    """What a term's (folded) first word may be written after, longest first: none for a
    word that does not start with an Arabic letter."""
    if not _is_arabic(word):
        return ()
    if sum(c.isalpha() for c in word) < _LETTERS_AFTER_A_LETTER_CLITIC:
        return _ARABIC_ARTICLES
    return (*_ARABIC_ARTICLES, *_ARABIC_LETTER_CLITICS)


def _attached_forms(term: str) -> list[str]:
    """A (folded) term as written with attached words (``_clitics`` before the first word,
    the article before a later Arabic one), the term itself not among them."""
    words = term.split(" ")
    choices = [[words[0], *(c + words[0] for c in _clitics(words[0]))]]
    choices += [[w, _ARTICLE + w] if _is_arabic(w) else [w] for w in words[1:]]
    return [" ".join(form) for form in itertools.product(*choices)][1:]


def _phrase_pattern(term: str) -> str:
    """A (folded) term's words as a regex: apart by spaces, hyphens or underscores, or by
    nothing where one side is a script written without spaces ("电子烟 烟油" in "电子烟烟油",
    "iqos 加热器" in "IQOS加热器": probe 39); with the attached words of ``_attached_forms``."""
    words = term.split(" ")
    clitics = _clitics(words[0])
    out = f"(?:{'|'.join(clitics)})?" if clitics else ""
    out += re.escape(words[0])
    for before, word in itertools.pairwise(words):
        glued = _UNSPACED_LETTER.match(before[-1]) or _UNSPACED_LETTER.match(word[0])
        out += r"[\s_-]*" if glued else r"[\s_-]+"
        out += (f"(?:{_ARTICLE})?" if _is_arabic(word) else "") + re.escape(word)
    return out


def parse_watchlist(text: str, source: str) -> Watchlist:
    """The list from CSV text; any fault is one error naming ``source`` and the row."""
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in reader.fieldnames or []]
    missing = [c for c in COLUMNS[:3] if c not in header]  # severity and note optional
    if missing:
        raise ParcelriskError(
            f"watchlist {source}: header lacks column(s) {', '.join(missing)} "
            f"(expected {','.join(COLUMNS)}; severity and note optional)"
        )
    reader.fieldnames = header
    rows: dict[str, list[str]] = {"term": [], "term_cat": [], "hs": [], "hs_cat": []}
    prohibited: dict[str, list[bool]] = {"term": [], "hs": []}
    notes: dict[str, list[str]] = {"term": [], "hs": []}
    seen: dict[tuple[str, str], int] = {}
    for line, row in enumerate(reader, start=2):
        if None in row:
            raise ParcelriskError(
                f"watchlist {source} row {line}: more fields than columns (quote a note holding commas)"
            )
        kind = (row.get("kind") or "").strip().lower()
        pattern = " ".join((row.get("pattern") or "").lower().split())
        category = (row.get("category") or "").strip().lower()
        if not any((kind, pattern, category)):
            continue  # blank line
        if kind not in KINDS:
            raise ParcelriskError(
                f"watchlist {source} row {line}: kind {kind!r} is not one of {', '.join(KINDS)}"
            )
        if not pattern:
            raise ParcelriskError(f"watchlist {source} row {line}: empty pattern")
        if kind == "term" and not _folded_term(pattern):
            # a mark or a tatweel alone folds to nothing, which every description would name
            raise ParcelriskError(
                f"watchlist {source} row {line}: term {pattern!r} has no letter to match "
                "(marks and the tatweel are read as nothing)"
            )
        if kind == "hs" and not _HS_PATTERN.fullmatch(pattern):
            raise ParcelriskError(
                f"watchlist {source} row {line}: HS prefix {pattern!r} is not 2-10 digits"
            )
        if not category or category == NONE:
            raise ParcelriskError(
                f"watchlist {source} row {line}: category missing (or the reserved {NONE!r})"
            )
        severity = (row.get("severity") or "").strip().lower() or SEVERITIES[0]
        if severity not in SEVERITIES:
            raise ParcelriskError(
                f"watchlist {source} row {line}: severity {severity!r} is not one of "
                f"{', '.join(SEVERITIES)} (or empty)"
            )
        if (kind, pattern) in seen:
            raise ParcelriskError(
                f"watchlist {source} row {line}: {kind} {pattern!r} repeats row {seen[kind, pattern]}"
            )
        seen[kind, pattern] = line
        rows["term" if kind == "term" else "hs"].append(pattern)
        rows["term_cat" if kind == "term" else "hs_cat"].append(category)
        notes[kind].append((row.get("note") or "").strip())
        prohibited[kind].append(severity == "prohibited")
    if not seen:
        raise ParcelriskError(f"watchlist {source}: no rows")
    return Watchlist(
        tuple(rows["term"]),
        tuple(rows["term_cat"]),
        tuple(rows["hs"]),
        tuple(rows["hs_cat"]),
        tuple(prohibited["term"]),
        tuple(prohibited["hs"]),
        (*notes["term"], *notes["hs"]),
    )


def load_watchlist(params: FeatureParams) -> Watchlist:
    """The list ``features.watchlist`` names, checked against the hash the settings recorded."""
    path = Path(str(params.watchlist))
    if not path.is_file():
        where = "" if path.is_absolute() else f" (a relative path is read from {Path.cwd()})"
        raise ParcelriskError(
            f"features.watchlist: {path}: file not found{where}; a params file copied "
            "elsewhere names the list by its full path, or none: watchlist: null"
        )
    if params.watchlist_sha256 and file_sha256(path) != params.watchlist_sha256:
        raise ParcelriskError(
            f"features.watchlist: {path} changed since the settings were read "
            "(features.watchlist_sha256 is filled in from the file: do not set it by hand)"
        )
    return _parse_file(str(path), params.watchlist_sha256 or file_sha256(path))


@functools.lru_cache(maxsize=8)
def _parse_file(path: str, sha256: str) -> Watchlist:
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ParcelriskError(f"features.watchlist: {path}: unreadable ({exc})") from None
    return parse_watchlist(text, path)


def match_terms(
    descriptions: np.ndarray, watchlist: Watchlist
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per description: index of the first listed term it names (-1: none), how many distinct
    listed terms it names, and whether any of them is prohibited. Distinct descriptions are
    matched once, by one regex scan each."""
    n = len(descriptions)
    first = np.full(n, -1, dtype=np.int64)
    count = np.zeros(n, dtype=np.int64)
    banned = np.zeros(n, dtype=bool)
    regex = watchlist.term_regex
    if regex is None or n == 0:
        return first, count, banned
    codes, uniques = hist.factorize(descriptions)
    u_first = np.full(len(uniques), -1, dtype=np.int64)
    u_count = np.zeros(len(uniques), dtype=np.int64)
    u_banned = np.zeros(len(uniques), dtype=bool)
    index, prohibited, findall = watchlist.match_index, watchlist.term_prohibited, regex.findall
    # A loop over the distinct descriptions, each scanned once by the one regex (the scan is the
    # cost: ~0.2 s for 300k rows). Plain Python after it: a pandas explode/groupby here cost a
    # fixed ~20 ms per call, most of a 100-declaration request's online features.
    for u, text in enumerate(uniques):
        if not isinstance(text, str):
            continue
        named = {_term_of(m, index) for m in findall(fold(text))} - {-1}
        if named:
            u_first[u] = min(named)
            u_count[u] = len(named)
            u_banned[u] = any(prohibited[t] for t in named)
    known = codes >= 0
    first[known] = u_first[codes[known]]
    count[known] = u_count[codes[known]]
    banned[known] = u_banned[codes[known]]
    return first, count, banned


_SEPARATORS = re.compile(r"[\s_-]+")


def _glued(words: str) -> str:
    """Words joined by one space, without the spaces beside a script written without them:
    "电子烟 烟油" and a match "电子烟烟油" are one key, as ``_phrase_pattern`` matches both."""
    return _BESIDE_UNSPACED.sub("", words)


def _term_of(matched: str, index: dict[str, int]) -> int:
    """The listed term a match of ``term_regex`` names (-1: none): its words lower-cased and
    joined by one space, its plural ending taken off when the term does not have it (an
    Arabic term's attached words are keys of ``match_index``)."""
    words = _glued(_SEPARATORS.sub(" ", fold(matched)).strip())
    for ending in ("", "s", "es"):
        if words.endswith(ending):
            found = index.get(words[: len(words) - len(ending)], -1)
            if found >= 0:
                return found
    return -1


def match_hs(hs_codes: np.ndarray, watchlist: Watchlist) -> np.ndarray:
    """Per HS code: index of the longest listed prefix it starts with (-1: none)."""
    out = np.full(len(hs_codes), -1, dtype=np.int64)
    if not watchlist.hs_prefixes or len(hs_codes) == 0:
        return out
    codes, uniques = hist.factorize(hs_codes)
    lengths = sorted({len(p) for p in watchlist.hs_prefixes}, reverse=True)
    index = watchlist.hs_index
    # a loop over the distinct codes (a few thousand tariff lines), not over the rows
    per_code = np.array(
        [next((index[c[:k]] for k in lengths if c[:k] in index), -1) for c in uniques],
        dtype=np.int64,
    )
    known = codes >= 0
    out[known] = per_code[codes[known]]
    return out


def _codes(index: np.ndarray, categories: tuple[str, ...], levels: tuple[str, ...]) -> np.ndarray:
    """Category codes in ``levels`` of each matched row's category (0: ``none``)."""
    lookup = _level_codes(categories, levels)
    return np.where(index >= 0, lookup[np.maximum(index, 0)], 0.0)


@functools.lru_cache(maxsize=64)  # the same few (list, manifest) pairs on every request
def _level_codes(categories: tuple[str, ...], levels: tuple[str, ...]) -> np.ndarray:
    code = {level: i for i, level in enumerate(levels)}  # a level the model lacks: -1 (unknown)
    lookup = np.array([code.get(c, -1) for c in categories] or [0], dtype=np.float64)
    lookup.flags.writeable = False  # shared by every call
    return lookup


def term_flag(category: str) -> str:
    """The indicator feature of a category's terms: ``watchlist_term_is_counterfeit_prone``."""
    return "watchlist_term_is_" + re.sub(r"\W+", "_", category).strip("_")


class WatchlistFamily(Family):
    name = "watchlist"
    distribution = "rows"

    def specs(self, ctx: SpecContext) -> list[FeatureSpec]:
        if not ctx.params.watchlist:
            return []
        # levels as a manifest fixed them (a snapshot read back), else from the list itself
        if HS_CATEGORY in ctx.categories:
            categories = ctx.categories[HS_CATEGORY]
            term_levels = ctx.categories.get(TERM, (NONE,))
        else:
            watchlist = load_watchlist(ctx.params)
            categories, term_levels = watchlist.categories, watchlist.term_levels
        source = ctx.params.watchlist
        specs = [
            FeatureSpec(
                HS_CATEGORY,
                "watchlist",
                "category",
                f"Category of the restricted-goods list ({source}) whose HS prefix the "
                "declared HS code starts with.",
                "HS code {hs_code} is on the restricted list ({value})",
                categories=categories,
            )
        ]
        if ctx.fed("description"):
            specs += [
                FeatureSpec(
                    TERM,
                    "watchlist",
                    "category",
                    f"First term of the restricted-goods list ({source}) the description names.",
                    "description names {value}, on the restricted list",
                    categories=term_levels,
                ),
                FeatureSpec(
                    TERM_CATEGORY,
                    "watchlist",
                    "category",
                    f"Category of that term on the restricted-goods list ({source}).",
                    "description names a restricted-list term ({value})",
                    categories=categories,
                ),
                *(
                    FeatureSpec(
                        term_flag(category),
                        "watchlist",
                        "float",
                        f"The description names a {category} term of the restricted-goods list "
                        f"({source}).",
                        f"description names a term on the restricted list ({category})",
                    )
                    for category in categories[1:]
                ),
                FeatureSpec(
                    TERM_PROHIBITED,
                    "watchlist",
                    "float",
                    f"The description names a term the list ({source}) marks prohibited.",
                    "description names goods on the prohibited list",
                ),
                FeatureSpec(
                    TERM_COUNT,
                    "watchlist",
                    "float",
                    "Number of distinct restricted-list terms the description names.",
                    "restricted-list terms the description names: {value:.0f}",
                ),
            ]
        return specs

    def compute(self, rows: Rows, part: Watchlist | None = None) -> Values:
        watchlist = part if part is not None else load_watchlist(rows.params)
        prep = rows.prep
        levels = rows.categories[HS_CATEGORY]
        hs = match_hs(prep["hs_code"], watchlist)
        hs_codes = _codes(hs, watchlist.hs_categories, levels)
        out = {HS_CATEGORY: np.where(pd.isna(prep["hs_code"]), np.nan, hs_codes)}
        if TERM in rows.categories:
            descriptions = prep["description"]  # missing descriptions are "" after prepare
            absent = np.asarray(descriptions == "", dtype=bool)
            first, count, banned = match_terms(descriptions, watchlist)
            term_levels = rows.categories[TERM]
            out[TERM] = np.where(
                absent, np.nan, _codes(first, watchlist.term_levels[1:], term_levels)
            )
            out[TERM_CATEGORY] = np.where(
                absent, np.nan, _codes(first, watchlist.term_categories, levels)
            )
            # one indicator per category besides the categorical: a category's few labelled
            # parcels (tens) are below LightGBM's min_data_per_group for a categorical branch
            for code, category in enumerate(levels[1:], start=1):
                out[term_flag(category)] = np.where(
                    absent, np.nan, (out[TERM_CATEGORY] == code).astype(np.float64)
                )
            out[TERM_COUNT] = np.where(absent, np.nan, count.astype(np.float64))
            # pools the categories an administration prohibits outright: a category nobody has
            # inspected yet (new drugs) borrows the labels of the others (weapons, wildlife)
            out[TERM_PROHIBITED] = np.where(absent, np.nan, banned.astype(np.float64))
        return out

    def batch(self, history: History) -> Values:
        return self.compute(history, load_watchlist(history.params))

    def fit_part(self, history: History, cutoff_us: int) -> Watchlist:
        return load_watchlist(history.params)

    def save_part(self, part: Watchlist | None, directory: Path) -> None:
        if part is not None:
            (Path(directory) / STATE_FILE).write_text(part.to_csv(), encoding="utf-8")

    def load_part(self, directory: Path) -> Watchlist:
        path = Path(directory) / STATE_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ParcelriskError(
                f"entity state: watchlist copy {path} unreadable ({exc})"
            ) from None
        return parse_watchlist(text, str(path))


FAMILY = WatchlistFamily()
