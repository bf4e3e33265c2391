"""Description models: does the text name what the HS code declares, and does it read like fraud?

Two naive Bayes models over the set of word tokens of a description, fitted from integer counts
so refits are exact and cheap:
- chapter model: P(HS chapter | description) learned from past declarations (the declared
  chapter is the label; the majority are honest, so a text that names shoes under a toy chapter
  gets a low probability for its declared chapter);
- illicit model: P(illicit | description) learned from inspection outcomes recorded before the
  period start (brand words at any price, restricted goods, vague wording).
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


def chapter_index(hs_chapter: pd.Series) -> np.ndarray:
    """HS chapter '61' -> 61; anything else -> -1."""
    num = pd.to_numeric(hs_chapter, errors="coerce").to_numpy(dtype=np.float64)
    return np.where(np.isfinite(num) & (num >= 1) & (num <= 99), num, -1).astype(np.int64)


@dataclass
class TextCounts:
    """Integer evidence accumulated over a (past) set of declarations and outcomes."""

    chapter_token: np.ndarray  # (V, N_CHAPTERS) documents of chapter c containing token t
    chapter_docs: np.ndarray  # (N_CHAPTERS,)
    illicit_token: np.ndarray  # (V, 2) labelled documents of class y containing token t
    illicit_docs: np.ndarray  # (2,)

    @staticmethod
    def zeros(n_tokens: int) -> TextCounts:
        return TextCounts(
            chapter_token=np.zeros((n_tokens, N_CHAPTERS), dtype=np.int64),
            chapter_docs=np.zeros(N_CHAPTERS, dtype=np.int64),
            illicit_token=np.zeros((n_tokens, 2), dtype=np.int64),
            illicit_docs=np.zeros(2, dtype=np.int64),
        )

    def add_declarations(self, X: sparse.csr_matrix, chapters: np.ndarray) -> None:
        ok = chapters >= 0
        if not ok.any():
            return
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

    @staticmethod
    def from_counts(
        counts: TextCounts, vocabulary: np.ndarray, alpha: float
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
        model = TextModel(
            tokens=np.asarray(vocabulary)[seen],
            chapter_log_prob=chapter_log_prob,
            chapter_log_prior=chapter_log_prior,
            illicit_llr=llr,
            illicit_log_prior_odds=prior_odds,
        )
        return model, seen

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "tokens": self.tokens.astype("U"),
            "chapter_log_prob": self.chapter_log_prob,
            "chapter_log_prior": self.chapter_log_prior,
            "illicit_llr": self.illicit_llr,
            "illicit_log_prior_odds": np.array([self.illicit_log_prior_odds]),
        }

    @staticmethod
    def from_arrays(arrays: dict[str, np.ndarray]) -> TextModel:
        return TextModel(
            tokens=arrays["tokens"].astype(str),
            chapter_log_prob=arrays["chapter_log_prob"],
            chapter_log_prior=arrays["chapter_log_prior"],
            illicit_llr=arrays["illicit_llr"],
            illicit_log_prior_odds=float(arrays["illicit_log_prior_odds"][0]),
        )


def text_scores(
    X: sparse.csr_matrix,
    chapter_log_prob: np.ndarray,
    chapter_log_prior: np.ndarray,
    illicit_llr: np.ndarray,
    illicit_log_prior_odds: float,
    chapters: np.ndarray,
) -> dict[str, np.ndarray]:
    """Model scores for rows of X (binary token matrix aligned with the model's token rows)."""
    logits = np.asarray(X @ chapter_log_prob) + chapter_log_prior
    logits -= logits.max(axis=1, keepdims=True)
    prob = np.exp(logits)
    prob /= prob.sum(axis=1, keepdims=True)
    rows = np.arange(len(chapters))
    declared = np.where(chapters >= 0, prob[rows, np.maximum(chapters, 0)], np.nan)
    top = prob.argmax(axis=1)
    has_tokens = (
        np.asarray((X @ np.ones(X.shape[1])) > 0).ravel()
        if X.shape[1]
        else np.zeros(len(chapters), bool)
    )
    illicit_logit = np.asarray(X @ illicit_llr).ravel() + illicit_log_prior_odds
    return {
        "text_p_declared_chapter": np.where(has_tokens, declared, np.nan),
        "text_p_top_chapter": np.where(has_tokens, prob.max(axis=1), np.nan),
        "text_top_chapter_differs": np.where(
            has_tokens, (top != chapters).astype(np.float64), np.nan
        ),
        "text_p_illicit": 1.0 / (1.0 + np.exp(-illicit_logit)),
    }


def description_shape(X_all: sparse.csr_matrix, vague_mask: np.ndarray) -> dict[str, np.ndarray]:
    """Token count and the vague flag (no token outside the vague vocabulary) from all tokens."""
    n_tokens = np.asarray(X_all.sum(axis=1)).ravel().astype(np.float64)
    n_specific = np.asarray(X_all @ (~vague_mask).astype(np.int64)).ravel()
    return {
        "description_n_tokens": n_tokens,
        "description_vague": (n_specific == 0).astype(np.float64),
    }
