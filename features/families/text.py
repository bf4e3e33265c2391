"""Text family: does the description name what the HS code declares, and does it read like fraud?

Two naive Bayes models over the set of word tokens of a description, fitted from integer counts
so refits are exact and cheap:
- chapter model: P(HS chapter | description) learned from past declarations (the declared
  chapter is the label; the majority are honest, so a text that names shoes under a toy chapter
  gets a low probability for its declared chapter);
- illicit model: P(illicit | description) learned from inspection outcomes recorded before the
  period start (brand words at any price, restricted goods, vague wording), and the highest
  smoothed hit rate of any single word (one decisive word, e.g. a restricted substance, is not
  drowned by the ordinary words around it);
- HS6 support: for each word, the share of past declarations containing it that used the
  declared HS6 (a description naming sneakers under a slipper code gets little support even when
  both sit in the same chapter, which the chapter model cannot see).
Only tokens seen before the period start count; unseen tokens are ignored, never guessed.
Batch refits the models every ``refit_period_days`` from integer counts accumulated over the
expanding history (what was declared, or recorded, ``refit_lag_days`` before each period
start); the snapshot keeps the models of the cutoff's period and the counts' evidence, from
which the live state refits them for later periods (``features.pipeline.refit``).
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from features.intake.words import WORD_READING, description_words, read_in_pairs
from features.notes import DESCRIPTION_OBSCURED, RowNote
from features.params import FeatureParams
from features.pipeline.family import History, Rows, SpecContext, Values
from features.pipeline.history import codes_of, factorize
from features.pipeline.manifest import FeatureSpec
from features.pipeline.prepare import evidence_period, fit_cut_us, period_of
from features.pipeline.refit import Evidence, RefitFamily, canonical

N_CHAPTERS = 100  # HS chapters 01..99 by their number; index 0 unused


def make_vectorizer(vocabulary: list[str] | None = None):
    """The binary word matrix of descriptions, their words as ``description_words`` reads them
    (batch builds the same matrix without scikit-learn: ``_tokenize_all``)."""
    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer(
        analyzer=description_words,
        binary=True,
        dtype=np.int64,
        vocabulary=vocabulary,
    )


def chapter_index(hs_chapter: np.ndarray) -> np.ndarray:
    """HS chapter '61' -> 61; anything else -> -1."""
    # parsed once per distinct chapter (a hundred), not per row: to_numeric on a million
    # strings costs over a second; a request's few chapters are looked up, not factorised
    codes, levels = factorize(np.asarray(hs_chapter, dtype=object))
    index = np.array([_chapter_number(c) for c in levels.tolist()] + [-1], dtype=np.int64)
    return index[codes]  # code -1 (missing): the appended -1


@functools.lru_cache(maxsize=4096)
def _chapter_number(chapter: str) -> int:
    """61 for '61'; -1 for anything that is not a number from 1 to 99."""
    num = float(pd.to_numeric(pd.Series([chapter], dtype=object), errors="coerce").iloc[0])
    return int(num) if np.isfinite(num) and 1 <= num <= 99 else -1


@dataclass
class TextCounts:
    """Integer evidence accumulated over a (past) set of declarations and outcomes."""

    chapter_token: np.ndarray  # (V, N_CHAPTERS) documents of chapter c containing token t
    chapter_docs: np.ndarray  # (N_CHAPTERS,)
    illicit_token: np.ndarray  # (V, 2) labelled documents of class y containing token t
    illicit_docs: np.ndarray  # (2,)
    n_hs6: int  # size of the HS6 code space of pair keys
    pair_keys: np.ndarray  # sorted unique token * n_hs6 + hs6 of past declarations
    pair_counts: np.ndarray  # documents per pair

    @staticmethod
    def zeros(n_tokens: int, n_hs6: int = 1) -> TextCounts:
        return TextCounts(
            chapter_token=np.zeros((n_tokens, N_CHAPTERS), dtype=np.int64),
            chapter_docs=np.zeros(N_CHAPTERS, dtype=np.int64),
            illicit_token=np.zeros((n_tokens, 2), dtype=np.int64),
            illicit_docs=np.zeros(2, dtype=np.int64),
            n_hs6=max(n_hs6, 1),
            pair_keys=np.zeros(0, dtype=np.int64),
            pair_counts=np.zeros(0, dtype=np.int64),
        )

    def add_declarations(
        self,
        X: sparse.csr_matrix,
        chapters: np.ndarray,
        hs6: np.ndarray,
        documents: np.ndarray | None = None,
    ) -> None:
        """Add past declarations (binary token rows, chapter index, HS6 code in [0, n_hs6)),
        each row standing for ``documents`` identical declarations (default one)."""
        ok = chapters >= 0
        if not ok.any():
            return
        if documents is None:
            documents = np.ones(len(chapters), dtype=np.int64)
        rows = np.flatnonzero(ok)
        Xok = X[rows].tocoo()
        keys = Xok.col.astype(np.int64) * self.n_hs6 + hs6[ok][Xok.row]
        merged, inverse = np.unique(np.concatenate((self.pair_keys, keys)), return_inverse=True)
        weights = np.concatenate((self.pair_counts, documents[ok][Xok.row]))
        self.pair_keys = merged
        self.pair_counts = np.bincount(inverse, weights=weights, minlength=len(merged)).astype(
            np.int64
        )
        onehot = sparse.csr_matrix(
            (documents[ok].astype(np.int64), (rows, chapters[ok])),
            shape=(X.shape[0], N_CHAPTERS),
        )
        self.chapter_token += np.asarray((X.T @ onehot).todense(), dtype=np.int64)
        self.chapter_docs += np.bincount(
            chapters[ok], weights=documents[ok], minlength=N_CHAPTERS
        ).astype(np.int64)

    def add_outcomes(self, X: sparse.csr_matrix, illicit: np.ndarray) -> None:
        if X.shape[0] == 0:
            return
        y = illicit.astype(np.int64)
        onehot = sparse.csr_matrix(
            (np.ones(len(y), dtype=np.int64), (np.arange(len(y)), y)), shape=(len(y), 2)
        )
        self.illicit_token += np.asarray((X.T @ onehot).todense(), dtype=np.int64)
        self.illicit_docs += np.bincount(y, minlength=2)


@dataclass(frozen=True)
class TextModel:
    """Naive Bayes log-probabilities restricted to the tokens seen so far (sorted)."""

    tokens: np.ndarray  # (V_seen,) str, sorted
    chapter_log_prob: np.ndarray  # (V_seen, N_CHAPTERS)
    chapter_log_prior: np.ndarray  # (N_CHAPTERS,)
    illicit_llr: np.ndarray  # (V_seen,) log P(t|illicit) - log P(t|licit); 0 if never labelled
    illicit_log_prior_odds: float
    word_hit_rate: np.ndarray  # (V_seen,) smoothed hit rate of labelled documents with the word
    token_docs: np.ndarray  # (V_seen,) past declarations containing the word
    hs6_vocabulary: np.ndarray  # (H,) str: HS6 codes of the pair keys
    pair_keys: np.ndarray  # sorted seen_token_index * H + hs6_index
    pair_counts: np.ndarray
    # how its words were read (``features.intake.words``); 1: a model saved before the field
    word_reading: int = WORD_READING

    @functools.cached_property
    def hs6_seen(self) -> np.ndarray:
        """(H,) bool: the HS6 codes some past declaration with words was declared under (once
        per model: a request reads it)."""
        n_h = max(len(self.hs6_vocabulary), 1)
        seen = np.zeros(n_h, dtype=bool)
        seen[np.unique(self.pair_keys % n_h)] = True
        return seen

    @staticmethod
    def from_counts(
        counts: TextCounts,
        vocabulary: np.ndarray,
        alpha: float,
        hs6_vocabulary: np.ndarray | None = None,
        word_prior_strength: float = 5.0,
    ) -> tuple[TextModel, np.ndarray]:
        """The model and the global-vocabulary indices of its tokens."""
        seen = np.flatnonzero(counts.chapter_token.sum(axis=1) > 0)
        ct = counts.chapter_token[seen].astype(np.float64)
        n_seen = len(seen)
        per_chapter = ct.sum(axis=0)
        chapter_log_prob = np.log(ct + alpha) - np.log(per_chapter + alpha * max(n_seen, 1))
        docs = counts.chapter_docs.astype(np.float64)
        chapter_log_prior = np.log(docs + alpha) - np.log(docs.sum() + alpha * N_CHAPTERS)

        it = counts.illicit_token[seen].astype(np.float64)
        labelled = it.sum(axis=1) > 0
        n_lab = max(int(labelled.sum()), 1)
        per_class = it.sum(axis=0)
        log_p = np.log(it + alpha) - np.log(per_class + alpha * n_lab)
        llr = np.where(labelled, log_p[:, 1] - log_p[:, 0], 0.0)
        d = counts.illicit_docs.astype(np.float64)
        prior_odds = float(np.log((d[1] + alpha) / (d[0] + alpha)))
        base_rate = (d[1] + 1.0) / (d.sum() + 2.0)
        word_hit_rate = (it[:, 1] + word_prior_strength * base_rate) / (
            it.sum(axis=1) + word_prior_strength
        )

        # pair table re-keyed on the seen-token index (monotone: seen is sorted)
        n_hs6 = counts.n_hs6
        position = np.full(len(counts.chapter_token), -1, dtype=np.int64)
        position[seen] = np.arange(len(seen))
        tok = counts.pair_keys // n_hs6
        keep = position[tok] >= 0 if len(tok) else np.zeros(0, dtype=bool)
        pair_keys = position[tok[keep]] * n_hs6 + counts.pair_keys[keep] % n_hs6
        if hs6_vocabulary is None:
            hs6_vocabulary = np.array([], dtype=str)
        model = TextModel(
            tokens=np.asarray(vocabulary)[seen],
            chapter_log_prob=chapter_log_prob,
            chapter_log_prior=chapter_log_prior,
            illicit_llr=llr,
            illicit_log_prior_odds=prior_odds,
            word_hit_rate=word_hit_rate,
            token_docs=ct.sum(axis=1).astype(np.int64),
            hs6_vocabulary=np.asarray(hs6_vocabulary).astype(str),
            pair_keys=pair_keys,
            pair_counts=counts.pair_counts[keep],
        )
        return model, seen

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "tokens": self.tokens.astype("U"),
            "chapter_log_prob": self.chapter_log_prob,
            "chapter_log_prior": self.chapter_log_prior,
            "illicit_llr": self.illicit_llr,
            "illicit_log_prior_odds": np.array([self.illicit_log_prior_odds]),
            "word_hit_rate": self.word_hit_rate,
            "token_docs": self.token_docs,
            "hs6_vocabulary": self.hs6_vocabulary.astype("U"),
            "pair_keys": self.pair_keys,
            "pair_counts": self.pair_counts,
            "word_reading": np.array([self.word_reading]),
        }

    @staticmethod
    def from_arrays(arrays: dict[str, np.ndarray]) -> TextModel:
        return TextModel(
            tokens=arrays["tokens"].astype(str),
            chapter_log_prob=arrays["chapter_log_prob"],
            chapter_log_prior=arrays["chapter_log_prior"],
            illicit_llr=arrays["illicit_llr"],
            illicit_log_prior_odds=float(arrays["illicit_log_prior_odds"][0]),
            word_hit_rate=arrays["word_hit_rate"],
            token_docs=arrays["token_docs"],
            hs6_vocabulary=arrays["hs6_vocabulary"].astype(str),
            pair_keys=arrays["pair_keys"],
            pair_counts=arrays["pair_counts"],
            word_reading=int(arrays["word_reading"][0]) if "word_reading" in arrays else 1,
        )


def text_scores(
    X: sparse.csr_matrix,
    model: TextModel,
    chapters: np.ndarray,
    hs6_codes: np.ndarray,
    *,
    min_token_docs: int,
) -> dict[str, np.ndarray]:
    """Model scores for rows of X (binary token matrix whose columns are ``model.tokens``).

    ``hs6_codes`` index ``model.hs6_vocabulary`` (-1: an HS6 the model never saw).
    """
    n = len(chapters)
    # in place: at 100 chapters a row, each temporary is the largest array of the family
    logits = np.asarray(X @ model.chapter_log_prob)
    logits += model.chapter_log_prior
    logits -= logits.max(axis=1, keepdims=True)
    prob = np.exp(logits, out=logits)
    total = prob.sum(axis=1)
    prob /= total[:, None]
    rows = np.arange(n)
    declared = np.where(chapters >= 0, prob[rows, np.maximum(chapters, 0)], np.nan)
    top = prob.argmax(axis=1)
    # the top chapter's shifted logit is 0, exp(0) = 1: its probability is exactly 1 / total
    top_prob = 1.0 / total
    has_tokens = np.diff(X.indptr) > 0
    illicit_logit = np.asarray(X @ model.illicit_llr).ravel() + model.illicit_log_prior_odds
    word_rate = np.full(n, np.nan)
    if X.nnz:
        # row maxima over the CSR segments of the rows that have words (scipy's multiply/max
        # costs ~0.15 ms of set-up per online request); rates are >= 0, as the sparse max was
        rates = model.word_hit_rate[X.indices]
        word_rate[has_tokens] = np.maximum.reduceat(rates, X.indptr[:-1][has_tokens])
    return {
        "text_p_declared_chapter": np.where(has_tokens, declared, np.nan),
        "text_p_top_chapter": np.where(has_tokens, top_prob, np.nan),
        "text_top_chapter_differs": np.where(
            has_tokens, (top != chapters).astype(np.float64), np.nan
        ),
        "text_p_illicit": 1.0 / (1.0 + np.exp(-illicit_logit)),
        "text_word_hit_rate_max": word_rate,
        **hs6_support(X, model, hs6_codes, min_token_docs=min_token_docs),
    }


def top_words(X: sparse.csr_matrix, model: TextModel, word_rate: np.ndarray) -> np.ndarray:
    """Per row, the word whose hit rate is ``word_rate`` (``text_word_hit_rate_max``), the first
    in the vocabulary's order among equals; None for a row without a word the model knows.

    The reason of that feature names it: "a word of the description was found in offences at
    rate 60%" left an officer guessing which, on "women's diver 手表 | packaging" (probe 11)."""
    n = X.shape[0]
    out = np.full(n, None, dtype=object)
    if not X.nnz:
        return out
    if not X.has_sorted_indices:  # tokenize_online's are: each row's words in vocabulary order
        X = X.sorted_indices()
    if n == 1:  # a single declaration, most requests: no row bookkeeping (~10 us of it)
        hits = np.flatnonzero(model.word_hit_rate[X.indices] == word_rate[0])
        if len(hits):
            out[0] = str(model.tokens[X.indices[hits[0]]])
        return out
    rows = np.repeat(np.arange(n), np.diff(X.indptr))
    hits = np.flatnonzero(model.word_hit_rate[X.indices] == word_rate[rows])
    if len(hits):
        # each row's first hit: its words are in vocabulary order (no ufunc.at: ~10x slower)
        hit_rows = rows[hits]
        first = hits[np.concatenate(([True], hit_rows[1:] != hit_rows[:-1]))]
        out[rows[first]] = model.tokens[X.indices[first]].tolist()
    return out


def hs6_support(
    X: sparse.csr_matrix, model: TextModel, hs6_codes: np.ndarray, *, min_token_docs: int
) -> dict[str, np.ndarray]:
    """Per row: mean and min over its well-known words of P(declared HS6 | word) in the past.

    Unknown (NaN) for an HS6 no past declaration with words was declared under (``hs6_codes``
    -1, or a code of the history's vocabulary the model has no pair of): no past use to be
    rare in. It read 0, "the description's words rarely go with HS 640395 (0% of past uses)",
    and every code of a new nomenclature edition looked misdescribed (probe 32: 44 parcels
    red or yellow on HS 2027 codes against 25 on their HS 2022 ones)."""
    n = X.shape[0]
    # X.tocoo() without scipy's set-up (~0.15 ms a request): rows from the CSR row pointers
    tok = X.indices.astype(np.int64)
    keep = model.token_docs[tok] >= min_token_docs if len(tok) else np.zeros(0, dtype=bool)
    row = np.repeat(np.arange(n, dtype=np.int64), np.diff(X.indptr))[keep]
    tok = tok[keep]
    h = hs6_codes[row]
    n_h = max(len(model.hs6_vocabulary), 1)
    keys = tok * n_h + np.maximum(h, 0)
    idx = np.searchsorted(model.pair_keys, keys)
    idx_ok = np.minimum(idx, max(len(model.pair_keys) - 1, 0))
    found = (h >= 0) & (idx < len(model.pair_keys))
    if len(model.pair_keys):
        found &= model.pair_keys[idx_ok] == keys
    count = np.where(found, model.pair_counts[idx_ok] if len(model.pair_keys) else 0, 0)
    share = count / model.token_docs[tok]
    words = np.bincount(row, minlength=n)
    mean = np.bincount(row, weights=share, minlength=n) / np.maximum(words, 1)
    low = np.full(n, np.inf)
    np.minimum.at(low, row, share)
    judged = (words > 0) & (hs6_codes >= 0)
    judged[judged] = model.hs6_seen[hs6_codes[judged]]
    return {
        "text_hs6_support_mean": np.where(judged, mean, np.nan),
        "text_hs6_support_min": np.where(judged, low, np.nan),
    }


def description_shape(X_all: sparse.csr_matrix, vague_mask: np.ndarray) -> dict[str, np.ndarray]:
    """Token count and the vague flag (no token outside the vague vocabulary) from all tokens.
    A description without a word (none sent: the export lacks the field, or the cell is empty)
    says nothing either way: both are unknown (NaN), as ``tokenize_online`` gives them. It was
    "vague", the flag's strongest value: an export scored without descriptions sent every
    parcel toward yellow with the reason "vague goods description" (probe)."""
    n_tokens = np.asarray(X_all.sum(axis=1)).ravel().astype(np.float64)
    n_specific = np.asarray(X_all @ (~vague_mask).astype(np.int64)).ravel()
    worded = n_tokens > 0
    return {
        "description_n_tokens": np.where(worded, n_tokens, np.nan),
        "description_vague": np.where(worded, (n_specific == 0).astype(np.float64), np.nan),
    }


_SPECS = (
    FeatureSpec(
        "text_p_declared_chapter",
        "text",
        "float",
        "Probability of the declared HS chapter given the description (model of past declarations).",
        "description matches HS chapter {hs_chapter} with probability {value:.0%} only",
    ),
    FeatureSpec(
        "text_p_top_chapter",
        "text",
        "float",
        "Probability of the most likely HS chapter given the description.",
        "description points to another chapter with probability {value:.0%}",
    ),
    FeatureSpec(
        "text_top_chapter_differs",
        "text",
        "float",
        "The description's most likely chapter is not the declared one.",
        "description suggests a different HS chapter than {hs_chapter}",
    ),
    FeatureSpec(
        "text_p_illicit",
        "text",
        "float",
        "Probability of an offence given the description words (model of past inspection results).",
        "description words are frequent in past offences ({value:.0%})",
    ),
    FeatureSpec(
        "text_word_hit_rate_max",
        "text",
        "float",
        "Highest smoothed hit rate of past inspections among the description's words.",
        "a word of the description was found in offences at rate {value:.0%}",
        reason_detail="the description's word '{description_word}' was found in offences at "
        "rate {value:.0%}",
    ),
    FeatureSpec(
        "text_hs6_support_mean",
        "text",
        "float",
        "Mean over the description's words of the share of past declarations with the word that used the declared HS6.",
        "description words rarely go with HS {hs6} ({value:.0%} of past uses)",
    ),
    FeatureSpec(
        "text_hs6_support_min",
        "text",
        "float",
        "Least support of any description word for the declared HS6.",
        "a description word was declared under HS {hs6} in only {value:.0%} of past uses",
    ),
    FeatureSpec(
        "description_n_tokens",
        "text",
        "float",
        "Distinct words in the description.",
        "description has only {value:.0f} word(s)",
    ),
    FeatureSpec(
        "description_vague",
        "text",
        "float",
        "The description uses only vague words (gift, parts, goods...).",
        "vague goods description",
    ),
)


@dataclass
class TextSnapshot:
    """The text models of the snapshot, with the lookups a request needs built once."""

    model: TextModel

    @functools.cached_property
    def tokenizer(self) -> tuple[Any, dict[str, int]]:
        """The models' analyzer and token -> column map (vocabulary validated here, once)."""
        tokens = list(self.model.tokens)
        if not tokens:  # no text model yet (tiny history): shapes only
            return make_vectorizer().build_analyzer(), {}
        vectorizer = make_vectorizer(tokens)
        vectorizer.transform([""])
        return vectorizer.build_analyzer(), dict(vectorizer.vocabulary_)

    @functools.cached_property
    def hs6_lookup(self) -> dict[str, int]:
        return {h: i for i, h in enumerate(self.model.hs6_vocabulary.tolist())}


def tokenize_online(
    descriptions: np.ndarray, analyze: Any, vocabulary: dict[str, int], vague_terms: frozenset[str]
) -> tuple[Any, dict[str, np.ndarray]]:
    """One pass over a request's descriptions: the binary token matrix of the text models'
    vocabulary, and the description shape (distinct words; vague = no word outside the vague
    terms), as ``CountVectorizer(binary=True)`` and ``description_shape`` give them in batch.

    A request holds a handful of descriptions; sklearn's ``transform`` and a throwaway
    ``fit_transform`` cost ~1 ms of set-up for them, a Python loop over the same analyzer
    tens of microseconds. Batch/online parity tests hold the two paths equal.
    """
    n = len(descriptions)
    n_tokens = np.empty(n, dtype=np.float64)
    vague = np.empty(n, dtype=np.float64)
    indices: list[int] = []
    indptr = [0]
    for i, text in enumerate(descriptions.tolist()):
        words = set(analyze(text))
        # no word: unknown, not vague (``description_shape``)
        n_tokens[i] = len(words) if words else np.nan
        vague[i] = float(words <= vague_terms) if words else np.nan
        indices.extend(sorted(vocabulary[w] for w in words if w in vocabulary))
        indptr.append(len(indices))
    X = sparse.csr_matrix(
        (np.ones(len(indices), dtype=np.int64), np.asarray(indices, dtype=np.int32), indptr),
        shape=(n, len(vocabulary)),
    )
    return X, {"description_n_tokens": n_tokens, "description_vague": vague}


def _tokenize_all(descriptions: np.ndarray) -> tuple[np.ndarray, Any, np.ndarray]:
    """Distinct descriptions tokenised once: (row -> distinct index, binary matrix, vocabulary).

    The matrix ``make_vectorizer().fit_transform`` gives, to the order of the column indices
    within a row (sums of float weights follow it), without importing scikit-learn: its import
    alone costs seconds of a build. The tokens of each description get ids in order of first
    appearance (CountVectorizer's ``_count_vocab``), each row's ids sorted, then renumbered to
    the sorted vocabulary (``_sort_features``); tests hold the two equal.
    """
    inverse, uniques = pd.factorize(descriptions)
    first_seen: dict[str, int] = {}
    indices: list[int] = []
    indptr = [0]
    for text in uniques.astype(str).tolist():
        ids = {first_seen.setdefault(w, len(first_seen)) for w in description_words(text)}
        indices.extend(sorted(ids))
        indptr.append(len(indices))
    if not first_seen:  # not a single word in any description
        return inverse, sparse.csr_matrix((len(uniques), 0), dtype=np.int64), np.array([], str)
    vocabulary = np.array(sorted(first_seen), dtype=object)
    sorted_id = np.empty(len(first_seen), dtype=np.int32)
    sorted_id[[first_seen[w] for w in vocabulary.tolist()]] = np.arange(len(first_seen))
    U = sparse.csr_matrix(
        (
            np.ones(len(indices), dtype=np.int64),
            sorted_id[np.asarray(indices, dtype=np.int64)],
            np.asarray(indptr, dtype=np.int32),
        ),
        shape=(len(uniques), len(vocabulary)),
    )
    return inverse, U, vocabulary


def _score_in_chunks(
    X: Any,
    model: TextModel,
    seen: np.ndarray,
    chapters: np.ndarray,
    hs6_codes: np.ndarray,
    params: FeatureParams,
) -> dict[str, np.ndarray]:
    """Score rows tokenised with the global vocabulary, keeping only the model's (seen) tokens.

    Dropping unseen columns makes "has tokens" mean "has known tokens", exactly as online.
    """
    parts: dict[str, list[np.ndarray]] = {}
    # rows are scored independently; 20k rows x 100 chapters (16 MB) keeps the dense
    # temporaries below glibc's mmap threshold, so they are reused instead of page-faulted
    chunk = 20_000
    for s in range(0, X.shape[0], chunk):
        part = text_scores(
            X[s : s + chunk][:, seen].tocsr(),
            model,
            chapters[s : s + chunk],
            hs6_codes[s : s + chunk],
            min_token_docs=params.min_reference_count,
        )
        for k, v in part.items():
            parts.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in parts.items()}


def _declaration_keys(
    descriptions: np.ndarray, chapters: np.ndarray, hs6_codes: np.ndarray, n_hs6: int
) -> np.ndarray:
    """One integer per row for its (distinct description, chapter, HS6 code): a row's text
    features and its evidence are functions of these three (and of the period's models).

    Descriptions repeat heavily (~9k distinct of a million at 1M rows, ~85k distinct
    triples over the refit periods), so batch counts and scores each triple once. Codes
    -1 (no parsable chapter, no HS6) are kept apart, not merged with code 0.
    """
    return (descriptions * np.int64(n_hs6 + 1) + (hs6_codes + 1)) * (N_CHAPTERS + 1) + (
        chapters + 1
    )


def _declaration_parts(keys: np.ndarray, n_hs6: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(description, chapter, HS6 code) of ``_declaration_keys``."""
    rest, chapter = np.divmod(keys, N_CHAPTERS + 1)
    description, hs6 = np.divmod(rest, n_hs6 + 1)
    return description, chapter - 1, hs6 - 1


def _add_declarations(
    counts: TextCounts, U: sparse.csr_matrix, keys: np.ndarray, n_hs6: int
) -> None:
    """Add the declarations of ``keys`` (``_declaration_keys``) to ``counts``, each distinct
    one once with the number of its rows (integer counts: the same totals as row by row)."""
    distinct, documents = np.unique(keys, return_counts=True)
    description, chapter, hs6 = _declaration_parts(distinct, n_hs6)
    counts.add_declarations(U[description], chapter, hs6, documents.astype(np.int64))


def _add_declarations_counted(
    counts: TextCounts, U: sparse.csr_matrix, keys: np.ndarray, documents: np.ndarray, n_hs6: int
) -> None:
    """``_add_declarations`` of keys each standing for ``documents`` declarations."""
    if not len(keys):
        return
    distinct, of_key = np.unique(keys, return_inverse=True)
    total = np.bincount(of_key, weights=documents, minlength=len(distinct)).astype(np.int64)
    description, chapter, hs6 = _declaration_parts(distinct, n_hs6)
    counts.add_declarations(U[description], chapter, hs6, total)


def inverse_of(index: dict[str, int], values: np.ndarray) -> np.ndarray:
    """The position of each value in ``index`` (every value is in it)."""
    return np.fromiter((index[v] for v in values.tolist()), dtype=np.int64, count=len(values))


def _fit_model(history: History, cut_us: int) -> TextModel:
    """The models fitted on the declarations before ``cut_us`` and the outcomes recorded
    before it, as batch fits them for the period with that cut (``fit_cut_us``)."""
    prep, outcomes, params = history.prep, history.outcomes, history.params
    n_before = int(np.searchsorted(prep["t_us"], cut_us, side="left"))  # rows in time order
    inverse, U, vocabulary = _tokenize_all(prep["description"][:n_before])
    if not len(vocabulary):  # no words at all before the period
        return TextModel.from_counts(
            TextCounts.zeros(0), np.array([], dtype=str), params.text_alpha
        )[0]
    # the history's codes of its first rows are theirs: in order of first appearance
    hs6_codes, hs6_vocabulary = history.column_codes("hs6")
    hs6_codes = hs6_codes[:n_before]
    hs6_vocabulary = hs6_vocabulary[: hs6_codes.max(initial=-1) + 1]
    counts = TextCounts.zeros(len(vocabulary), len(hs6_vocabulary))
    keys = _declaration_keys(
        inverse.astype(np.int64),
        chapter_index(prep["hs_chapter"][:n_before]),
        hs6_codes,
        len(hs6_vocabulary),
    )
    _add_declarations(counts, U, keys, len(hs6_vocabulary))
    known_out = outcomes["t_us"] < cut_us
    rows = outcomes["rows"][known_out]  # all declared before their result, so before start
    counts.add_outcomes(U[inverse[rows]], outcomes["illicit"][known_out])
    model, _ = TextModel.from_counts(counts, vocabulary, params.text_alpha, hs6_vocabulary)
    return model


class Text(RefitFamily):
    name = "text"
    distribution = "aggregates"

    def specs(self, ctx: SpecContext) -> list[FeatureSpec]:
        return list(_SPECS) if ctx.fed("description") else []

    def compute(self, rows: Rows, part: TextSnapshot | None = None) -> Values:
        snapshot = part if part is not None else TextSnapshot(_fit_model_empty(rows.params))
        prep, params = rows.prep, rows.params
        analyze, vocabulary = snapshot.tokenizer
        X, shape = tokenize_online(
            prep["description"], analyze, vocabulary, frozenset(params.vague_terms)
        )
        out = text_scores(
            X,
            snapshot.model,
            chapter_index(prep["hs_chapter"]),
            codes_of(snapshot.hs6_lookup, prep["hs6"]),
            min_token_docs=params.min_reference_count,
        )
        out.update(shape)
        # for the reason alone (online: batch has no use for it, and a million strings)
        out["description_word"] = top_words(X, snapshot.model, out["text_word_hit_rate_max"])
        # a Thai or Chinese description's "words" are pairs of characters: its reasons say so
        out["description_in_pairs"] = np.array(
            [read_in_pairs(d) for d in prep["description"].tolist()], dtype=object
        )
        return out

    def warnings(self, rows: Rows, values: Values, part: object) -> list[RowNote]:
        # read as the words it prints (prepare): the officer should know it was written to
        # hide them, since the trader chose to
        return [
            RowNote(
                int(i),
                "the description holds hidden marks or look-alike letters: read as "
                f"{rows.prep['description'][i][:80]!r}",
                DESCRIPTION_OBSCURED,
            )
            for i in np.flatnonzero(rows.prep["description_obscured"])
        ]

    def batch(self, history: History) -> Values:
        """Models refitted per period on declarations before its start and outcomes recorded
        before it, scoring the period's rows: ``compute`` in bulk (one tokenisation of the
        distinct descriptions, counts accumulated period by period, each distinct
        (description, chapter, HS6) of a period scored once)."""
        prep, params, outcomes = history.prep, history.params, history.outcomes
        n = prep.n_rows
        t = prep["t_us"]  # sorted ascending
        periods = period_of(t, params.refit_period_days)
        inverse, U, vocabulary = _tokenize_all(prep["description"])
        vague_mask = np.isin(vocabulary, list(params.vague_terms))
        hs6_codes, hs6_vocabulary = history.column_codes("hs6")
        n_hs6 = len(hs6_vocabulary)
        keys = _declaration_keys(
            inverse.astype(np.int64), chapter_index(prep["hs_chapter"]), hs6_codes, n_hs6
        )
        counts = TextCounts.zeros(len(vocabulary), n_hs6)
        out_order = np.argsort(outcomes["t_us"], kind="stable")
        out_rows_sorted = outcomes["rows"][out_order]
        out_t_sorted = outcomes["t_us"][out_order]
        out_ill_sorted = outcomes["illicit"][out_order]

        result: Values = {}
        decl_done = out_done = 0
        bounds = np.flatnonzero(np.diff(periods)) + 1
        starts = np.concatenate(([0], bounds))
        ends = np.concatenate((bounds, [n]))
        for lo, hi in history.track(zip(starts, ends, strict=True), "text", len(starts)):
            cut_us = fit_cut_us(int(periods[lo]), params)
            # evidence: declarations before the cut (refit_lag_days before the period start),
            # outcomes recorded before it
            upto = int(np.searchsorted(t, cut_us, side="left"))
            _add_declarations(counts, U, keys[decl_done:upto], n_hs6)
            decl_done = upto
            new_out = np.searchsorted(out_t_sorted, cut_us, side="left")
            rows = out_rows_sorted[out_done:new_out]
            counts.add_outcomes(U[inverse[rows]], out_ill_sorted[out_done:new_out])
            out_done = new_out
            model, seen = TextModel.from_counts(
                counts, vocabulary, params.text_alpha, hs6_vocabulary
            )
            # rows are scored independently: each distinct row once, then gathered
            distinct, of_row = np.unique(keys[lo:hi], return_inverse=True)
            description, chapter, hs6 = _declaration_parts(distinct, n_hs6)
            scores = _score_in_chunks(U[description], model, seen, chapter, hs6, params)
            for name, values in scores.items():
                if name not in result:  # (setdefault would allocate a full column every period)
                    result[name] = np.full(n, np.nan)
                result[name][lo:hi] = values[of_row]
        shape = description_shape(U, vague_mask)  # per distinct description
        result.update({name: values[inverse] for name, values in shape.items()})
        return result

    def batch_of_counts(
        self,
        declared: pd.DataFrame,
        results: pd.DataFrame,
        hs6_vocabulary: np.ndarray,
        params: FeatureParams,
    ) -> pd.DataFrame:
        """``batch`` from partial aggregates (the Dask engine's): the text features of each
        (period, description, hs_chapter, hs6) of ``declared``, the distinct declarations per
        refit period (and ``evidence_period``: the last period whose fit does not learn from
        them) with their count ``n``; ``results``: the recorded results per (evidence period of
        their recording, description, illicit) with ``n``; ``hs6_vocabulary``: the history's
        HS6 codes in order of first appearance. The same integer evidence as ``batch`` period
        by period, each distinct declaration scored the same way: the same values.
        """
        periods = declared["period"].to_numpy(np.int64)
        evidence_periods = declared["evidence_period"].to_numpy(np.int64)
        descriptions = declared["description"].to_numpy(object)
        inverse, U, vocabulary = _tokenize_all(descriptions)
        vague_mask = np.isin(vocabulary, list(params.vague_terms))
        n_hs6 = len(hs6_vocabulary)
        hs6_codes = codes_of(
            {v: i for i, v in enumerate(hs6_vocabulary.tolist())},
            declared["hs6"].to_numpy(object),
        )
        keys = _declaration_keys(
            inverse.astype(np.int64),
            chapter_index(declared["hs_chapter"].to_numpy(object)),
            hs6_codes,
            n_hs6,
        )
        documents = declared["n"].to_numpy(np.int64)
        # U's rows: the distinct descriptions in order of first appearance (pd.factorize's)
        description_of = {d: i for i, d in enumerate(pd.unique(descriptions).tolist())}
        result_description = inverse_of(description_of, results["description"].to_numpy(object))
        result_period = results["period"].to_numpy(np.int64)
        result_illicit = results["illicit"].to_numpy(bool)
        result_n = results["n"].to_numpy(np.int64)
        counts = TextCounts.zeros(len(vocabulary), n_hs6)
        out: dict[str, np.ndarray] = {}
        added = np.zeros(len(declared), dtype=bool)
        results_added = np.zeros(len(results), dtype=bool)
        for period in np.unique(periods):
            # evidence: declarations and results of earlier evidence periods
            new = ~added & (evidence_periods < period)
            _add_declarations_counted(counts, U, keys[new], documents[new], n_hs6)
            added |= new
            new = ~results_added & (result_period < period)
            rows = np.repeat(np.flatnonzero(new), result_n[new])  # one document per result
            counts.add_outcomes(U[result_description[rows]], result_illicit[rows])
            results_added |= new
            model, seen = TextModel.from_counts(
                counts, vocabulary, params.text_alpha, hs6_vocabulary
            )
            at = np.flatnonzero(periods == period)
            distinct, of_row = np.unique(keys[at], return_inverse=True)
            description, chapter, hs6 = _declaration_parts(distinct, n_hs6)
            scores = _score_in_chunks(U[description], model, seen, chapter, hs6, params)
            for name, values in scores.items():
                out.setdefault(name, np.full(len(declared), np.nan))[at] = values[of_row]
        shape = description_shape(U, vague_mask)
        out.update({name: values[inverse] for name, values in shape.items()})
        return pd.DataFrame(out, index=declared.index)

    def part_of_counts(
        self,
        declared: pd.DataFrame,
        results: pd.DataFrame,
        hs6_vocabulary: np.ndarray,
        params: FeatureParams,
        cutoff_us: int,
    ) -> TextSnapshot:
        """``fit_part`` from the aggregates of ``batch_of_counts``: the model fitted on the
        declarations and results of the periods before the one holding ``cutoff_us``."""
        period = int(period_of(np.array([cutoff_us]), params.refit_period_days)[0])
        declared = declared[declared["evidence_period"].to_numpy(np.int64) < period]
        results = results[results["period"].to_numpy(np.int64) < period]
        # the HS6 codes declared before the period, in order of first appearance
        hs6_vocabulary = hs6_vocabulary[np.isin(hs6_vocabulary, declared["hs6"].dropna())]
        return TextSnapshot(model_of_counts(declared, results, hs6_vocabulary, params))

    def fit_before(self, history: History, cut_us: int) -> TextSnapshot:
        return TextSnapshot(_fit_model(history, cut_us))

    def evidence_of_rows(self, rows: Rows) -> dict[str, np.ndarray]:
        return {k: rows.prep[k] for k in ("description", "hs_chapter", "hs6")}

    def evidence_of_results(self, rows: Rows, illicit: np.ndarray) -> dict[str, np.ndarray]:
        return {"description": rows.prep["description"], "illicit": illicit}

    def evidence_of_aggregates(
        self, declared: pd.DataFrame, results: pd.DataFrame, params: FeatureParams
    ) -> Evidence:
        """``history_evidence`` from the Dask engine's aggregates: ``declared`` the distinct
        declarations per (refit, evidence) period with their count ``n``, ``results`` each
        result recorded before the cutoff (t_us, description, illicit)."""
        declared = declared[["description", "hs_chapter", "hs6", "evidence_period", "n"]]
        declared = declared.rename(columns={"evidence_period": "period"})
        periods = evidence_period(results["t_us"].to_numpy(np.int64), params)
        results = results[["description", "illicit"]].assign(period=periods, n=1)
        return {"declared": canonical(declared), "results": canonical(results)}

    def fit_evidence(self, evidence: Evidence, rows: Rows) -> TextSnapshot:
        """The models of the declarations and results in ``evidence``: the same integer counts
        as batch's of the same rows, so the same models."""
        declared = evidence.get("declared")
        if declared is None or not len(declared):
            return TextSnapshot(_fit_model_empty(rows.params))
        declared = _summed(declared, ["description", "hs_chapter", "hs6"])
        results = evidence.get("results")
        results = (
            _summed(results, ["description", "illicit"])
            if results is not None and len(results)
            else pd.DataFrame({"description": [], "illicit": [], "n": []})
        )
        # a result of a declaration the live state never took in (one that came too late)
        # has no declaration here to learn its words from
        results = results[results["description"].isin(declared["description"])]
        hs6 = declared["hs6"].to_numpy(object, na_value=None)
        hs6_vocabulary = np.asarray(pd.unique(hs6[pd.notna(hs6)]), dtype=object)
        return TextSnapshot(model_of_counts(declared, results, hs6_vocabulary, rows.params))

    def save_fitted(self, fitted: TextSnapshot, directory: Path) -> None:
        np.savez(directory / "text_model.npz", **fitted.model.to_arrays())

    def load_fitted(self, directory: Path) -> TextSnapshot:
        arrays = np.load(directory / "text_model.npz")
        snapshot = TextSnapshot(TextModel.from_arrays({k: arrays[k] for k in arrays.files}))
        _ = snapshot.tokenizer, snapshot.hs6_lookup  # built at load, not on the first request
        _warn_older_reading(snapshot.model, directory)
        return snapshot


def _warn_older_reading(model: TextModel, directory: Path) -> None:
    """Say when a text model learnt words read another way than descriptions are read now
    (their descriptions now give other words: the model no longer finds them until it is
    retrained). ASCII words read the same in every reading. Before reading 2 every word of
    another script may differ; since, a word differs if it reads otherwise now (reading 3
    dropped the tatweel: a learnt "سـاعة" is "ساعة" now)."""
    if model.word_reading >= WORD_READING:
        return
    other = [
        t
        for t in model.tokens.tolist()
        if not t.isascii() and (model.word_reading < 2 or description_words(t) != [t])
    ]
    if other:
        logging.getLogger(__name__).warning(
            "%s: the text model was saved by an earlier version (word reading %d, now %d), "
            "which read words in other scripts differently (%d of its %d words, e.g. %r: "
            "accents, capitals, Chinese without spaces, the Arabic tatweel); descriptions are "
            "read as now, so those words are not found again: retrain to learn them as they "
            "are read now",
            directory,
            model.word_reading,
            WORD_READING,
            len(other),
            len(model.tokens),
            other[0],
        )


def _summed(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Evidence rows with the same keys as one, their counts summed (none left at 0)."""
    summed = frame.groupby(keys, dropna=False, sort=False)["n"].sum().reset_index()
    summed = summed[summed["n"].to_numpy(np.int64) > 0]
    for key in keys:  # text back to objects with None, as the prepared columns hold them
        if key != "illicit":
            summed[key] = pd.Series(
                summed[key].to_numpy(object, na_value=None), dtype=object, index=summed.index
            )
    return summed


def model_of_counts(
    declared: pd.DataFrame,
    results: pd.DataFrame,
    hs6_vocabulary: np.ndarray,
    params: FeatureParams,
) -> TextModel:
    """The models of distinct declarations (description, hs_chapter, hs6, n: how many) and
    results (description, illicit, n), all before a period start; ``hs6_vocabulary``: the HS6
    codes among them."""
    descriptions = declared["description"].to_numpy(object)
    inverse, U, vocabulary = _tokenize_all(descriptions)
    if not len(vocabulary):  # no words at all before the period
        return _fit_model_empty(params)
    n_hs6 = len(hs6_vocabulary)
    keys = _declaration_keys(
        inverse.astype(np.int64),
        chapter_index(declared["hs_chapter"].to_numpy(object)),
        codes_of(
            {v: i for i, v in enumerate(hs6_vocabulary.tolist())},
            declared["hs6"].to_numpy(object),
        ),
        n_hs6,
    )
    counts = TextCounts.zeros(len(vocabulary), n_hs6)
    _add_declarations_counted(counts, U, keys, declared["n"].to_numpy(np.int64), n_hs6)
    description_of = {d: i for i, d in enumerate(pd.unique(descriptions).tolist())}
    rows = np.repeat(np.arange(len(results)), results["n"].to_numpy(np.int64))
    of_result = inverse_of(description_of, results["description"].to_numpy(object))
    counts.add_outcomes(U[of_result[rows]], results["illicit"].to_numpy(bool)[rows])
    model, _ = TextModel.from_counts(counts, vocabulary, params.text_alpha, hs6_vocabulary)
    return model


def _fit_model_empty(params: FeatureParams) -> TextModel:
    return TextModel.from_counts(TextCounts.zeros(0), np.array([], dtype=str), params.text_alpha)[0]


FAMILY = Text()
