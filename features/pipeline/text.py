"""Description models: does the text name what the HS code declares, and does it read like fraud?

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
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

N_CHAPTERS = 100  # HS chapters 01..99 by their number; index 0 unused
TOKEN_PATTERN = r"(?u)\b[^\W\d_][^\W\d_]+\b"  # words of 2+ letters; numbers and sizes are noise


def make_vectorizer(vocabulary: list[str] | None = None):
    from sklearn.feature_extraction.text import CountVectorizer

    return CountVectorizer(
        lowercase=True,
        token_pattern=TOKEN_PATTERN,
        binary=True,
        dtype=np.int64,
        vocabulary=vocabulary,
    )


def chapter_index(hs_chapter: np.ndarray) -> np.ndarray:
    """HS chapter '61' -> 61; anything else -> -1."""
    num = np.asarray(pd.to_numeric(hs_chapter, errors="coerce"), dtype=np.float64)
    return np.where(np.isfinite(num) & (num >= 1) & (num <= 99), num, -1).astype(np.int64)


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

    def add_declarations(self, X: sparse.csr_matrix, chapters: np.ndarray, hs6: np.ndarray) -> None:
        """Add past declarations (binary token rows, chapter index, HS6 code in [0, n_hs6))."""
        ok = chapters >= 0
        if not ok.any():
            return
        Xok = X[np.flatnonzero(ok)].tocoo()
        keys = Xok.col.astype(np.int64) * self.n_hs6 + hs6[ok][Xok.row]
        merged, inverse = np.unique(np.concatenate((self.pair_keys, keys)), return_inverse=True)
        weights = np.concatenate((self.pair_counts, np.ones(len(keys), dtype=np.int64)))
        self.pair_keys = merged
        self.pair_counts = np.bincount(inverse, weights=weights, minlength=len(merged)).astype(
            np.int64
        )
        onehot = sparse.csr_matrix(
            (np.ones(int(ok.sum()), dtype=np.int64), (np.flatnonzero(ok), chapters[ok])),
            shape=(X.shape[0], N_CHAPTERS),
        )
        self.chapter_token += np.asarray((X.T @ onehot).todense(), dtype=np.int64)
        self.chapter_docs += np.bincount(chapters[ok], minlength=N_CHAPTERS)

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
    logits = np.asarray(X @ model.chapter_log_prob) + model.chapter_log_prior
    logits -= logits.max(axis=1, keepdims=True)
    prob = np.exp(logits)
    prob /= prob.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    declared = np.where(chapters >= 0, prob[rows, np.maximum(chapters, 0)], np.nan)
    top = prob.argmax(axis=1)
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
        "text_p_top_chapter": np.where(has_tokens, prob.max(axis=1), np.nan),
        "text_top_chapter_differs": np.where(
            has_tokens, (top != chapters).astype(np.float64), np.nan
        ),
        "text_p_illicit": 1.0 / (1.0 + np.exp(-illicit_logit)),
        "text_word_hit_rate_max": word_rate,
        **hs6_support(X, model, hs6_codes, min_token_docs=min_token_docs),
    }


def hs6_support(
    X: sparse.csr_matrix, model: TextModel, hs6_codes: np.ndarray, *, min_token_docs: int
) -> dict[str, np.ndarray]:
    """Per row: mean and min over its well-known words of P(declared HS6 | word) in the past."""
    n = X.shape[0]
    coo = X.tocoo()
    tok = coo.col.astype(np.int64)
    keep = model.token_docs[tok] >= min_token_docs if len(tok) else np.zeros(0, dtype=bool)
    row, tok = coo.row[keep], tok[keep]
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
    return {
        "text_hs6_support_mean": np.where(words > 0, mean, np.nan),
        "text_hs6_support_min": np.where(words > 0, low, np.nan),
    }


def description_shape(X_all: sparse.csr_matrix, vague_mask: np.ndarray) -> dict[str, np.ndarray]:
    """Token count and the vague flag (no token outside the vague vocabulary) from all tokens."""
    n_tokens = np.asarray(X_all.sum(axis=1)).ravel().astype(np.float64)
    n_specific = np.asarray(X_all @ (~vague_mask).astype(np.int64)).ravel()
    return {
        "description_n_tokens": n_tokens,
        "description_vague": (n_specific == 0).astype(np.float64),
    }
