"""Online features: new declarations + the entity-state snapshot -> exactly the batch features.

The snapshot (``EntityState``) holds, as known at its cutoff:
- per entity: the vocabulary of keys, totals of everything older than the longest window
  (first seen, inspections, offences, revenue) and the individual events inside it;
- the reference prices and text models that batch uses for the period containing the cutoff.
``compute_online_features`` rebuilds the same ``EventIndex`` structures from the snapshot plus the
request rows (so parcels of one request see each other, as in batch) and calls the same family
functions as ``features.pipeline.build``. Parity is tested, not hoped for.

Learned components are those of the cutoff's refit period (fitted before the period start), the
same staleness the model was trained with: consistency over freshness.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.errors import ParcelriskError
from features.intake.contract import Contract, ExtraColumn, FrameColumns, RecordColumns, columns_of
from features.params import FeatureParams
from features.pipeline import history as hist
from features.pipeline.build import (
    Entity,
    Prepared,
    assemble,
    declaration_features,
    entities_for,
    entity_codes,
    entity_keys,
    outcome_events,
    period_of,
    period_start_us,
    prepare,
    sort_declarations,
    split_shipment_features,
    uses_quantity,
)
from features.pipeline.manifest import REASON_CONTEXT, FeatureManifest
from features.pipeline.text import (
    TextCounts,
    TextModel,
    chapter_index,
    make_vectorizer,
    text_scores,
)
from features.pipeline.valuation import LOG_COLUMNS, References, fit_references, valuation_features

META_FILE = "meta.json"
FORMAT_VERSION = 1


@dataclass
class EntityTable:
    vocabulary: pd.Index  # code -> key
    base: hist.EntityBase  # totals before the horizon, by code
    decl_codes: np.ndarray
    decl_t_us: np.ndarray
    decl_value_cents: np.ndarray
    out_codes: np.ndarray
    out_t_us: np.ndarray
    out_illicit: np.ndarray
    out_revenue_cents: np.ndarray

    @property
    def lookup(self) -> dict[str, int]:
        """key -> code, built on first use."""
        cached = self.__dict__.get("_lookup")
        if cached is None:
            cached = {key: code for code, key in enumerate(self.vocabulary)}
            self.__dict__["_lookup"] = cached
        return cached


@dataclass
class EntityState:
    cutoff_us: int
    period_start_us: int
    params: FeatureParams
    contract: Contract
    manifest: FeatureManifest
    entities: dict[str, EntityTable]
    global_base: hist.EntityBase
    global_out_t_us: np.ndarray
    global_out_illicit: np.ndarray
    global_out_revenue_cents: np.ndarray
    references: References
    text_model: TextModel
    fingerprint: str = ""

    @property
    def cutoff(self) -> pd.Timestamp:
        return pd.Timestamp(self.cutoff_us * 1000, tz="UTC")

    # --- persistence -------------------------------------------------------------------------
    def save(self, directory: Path) -> Path:
        """Write the snapshot atomically: into a sibling temp dir, then swap it in."""
        import shutil
        import tempfile

        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
        try:
            specs = list(self.entities)
            for i, spec in enumerate(specs):
                table = self.entities[spec]
                pd.DataFrame(
                    {
                        "key": table.vocabulary.astype("str"),
                        "first_seen_us": table.base.first_seen_us,
                        "n_inspected": table.base.n_inspected,
                        "n_illicit": table.base.n_illicit,
                        "revenue_cents": table.base.revenue_cents,
                    }
                ).to_parquet(tmp / f"entity_{i}.parquet", index=False)
                np.savez(
                    tmp / f"events_{i}.npz",
                    decl_codes=table.decl_codes,
                    decl_t_us=table.decl_t_us,
                    decl_value_cents=table.decl_value_cents,
                    out_codes=table.out_codes,
                    out_t_us=table.out_t_us,
                    out_illicit=table.out_illicit,
                    out_revenue_cents=table.out_revenue_cents,
                )
            np.savez(
                tmp / "global.npz",
                base_n_inspected=self.global_base.n_inspected,
                base_n_illicit=self.global_base.n_illicit,
                out_t_us=self.global_out_t_us,
                out_illicit=self.global_out_illicit,
                out_revenue_cents=self.global_out_revenue_cents,
            )
            self.references.hs6.to_parquet(tmp / "references_hs6.parquet")
            self.references.hs6_origin.to_parquet(tmp / "references_hs6_origin.parquet")
            np.savez(tmp / "text_model.npz", **self.text_model.to_arrays())
            self.manifest.write(tmp)
            fingerprint = _fingerprint_dir(tmp)
            meta = {
                "format_version": FORMAT_VERSION,
                "cutoff_us": self.cutoff_us,
                "cutoff": str(self.cutoff),
                "period_start_us": self.period_start_us,
                "params": self.params.to_dict(),
                "extras": [
                    {"name": e.name, "kind": e.kind, "description": e.description}
                    for e in self.contract.extras
                ],
                "entities": specs,
                "manifest_fingerprint": self.manifest.fingerprint,
                "fingerprint": fingerprint,
            }
            (tmp / META_FILE).write_text(json.dumps(meta, indent=1))
            if directory.exists():
                old = directory.with_name(f".{directory.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                directory.rename(old)
                tmp.rename(directory)
                shutil.rmtree(old, ignore_errors=True)
            else:
                tmp.rename(directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.fingerprint = fingerprint
        return directory

    @classmethod
    def load(cls, directory: Path) -> EntityState:
        directory = Path(directory)
        meta_path = directory / META_FILE
        if not meta_path.exists():
            raise ParcelriskError(
                f"entity state not found in {directory} (run `parcelrisk features build`)"
            )
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("format_version") != FORMAT_VERSION:
                raise ParcelriskError(
                    f"entity state in {directory} has format {meta.get('format_version')}, expected {FORMAT_VERSION}"
                )
            actual = _fingerprint_dir(directory)
            if actual != meta["fingerprint"]:
                raise ParcelriskError(
                    f"entity state in {directory} is corrupt: content does not match its fingerprint"
                )
            params_raw = dict(meta["params"])
            params = FeatureParams.from_mapping(params_raw)
            contract = Contract(tuple(ExtraColumn(**e) for e in meta["extras"]))
            manifest = FeatureManifest.read(directory)
            entities = {}
            for i, spec in enumerate(meta["entities"]):
                base_df = pd.read_parquet(directory / f"entity_{i}.parquet")
                ev = np.load(directory / f"events_{i}.npz")
                entities[spec] = EntityTable(
                    # object dtype: hash lookups of a few keys per request are cheapest
                    vocabulary=pd.Index(base_df["key"].to_numpy(dtype=object), dtype="object"),
                    base=hist.EntityBase(
                        first_seen_us=base_df["first_seen_us"].to_numpy(np.int64),
                        n_inspected=base_df["n_inspected"].to_numpy(np.int64),
                        n_illicit=base_df["n_illicit"].to_numpy(np.int64),
                        revenue_cents=base_df["revenue_cents"].to_numpy(np.int64),
                    ),
                    **{k: ev[k] for k in ev.files},
                )
            g = np.load(directory / "global.npz")
            text_arrays = np.load(directory / "text_model.npz")
            state = cls(
                cutoff_us=int(meta["cutoff_us"]),
                period_start_us=int(meta["period_start_us"]),
                params=params,
                contract=contract,
                manifest=manifest,
                entities=entities,
                global_base=hist.EntityBase(
                    first_seen_us=np.array([hist.NO_TIME]),
                    n_inspected=g["base_n_inspected"],
                    n_illicit=g["base_n_illicit"],
                    revenue_cents=np.zeros(1, dtype=np.int64),
                ),
                global_out_t_us=g["out_t_us"],
                global_out_illicit=g["out_illicit"],
                global_out_revenue_cents=g["out_revenue_cents"],
                references=References(
                    hs6=pd.read_parquet(directory / "references_hs6.parquet"),
                    hs6_origin=pd.read_parquet(directory / "references_hs6_origin.parquet"),
                ),
                text_model=TextModel.from_arrays({k: text_arrays[k] for k in text_arrays.files}),
                fingerprint=meta["fingerprint"],
            )
        except ParcelriskError:
            raise
        except (OSError, KeyError, ValueError) as exc:
            raise ParcelriskError(f"entity state in {directory} is unreadable: {exc}") from exc
        if manifest.fingerprint != meta["manifest_fingerprint"]:
            raise ParcelriskError(
                f"entity state in {directory}: manifest does not match the snapshot"
            )
        _merged_snapshot(state)  # sort and index once at load, not on the first request
        for table in state.entities.values():
            _ = table.lookup
        return state


def _fingerprint_dir(directory: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(Path(directory).iterdir()):
        if path.name == META_FILE or not path.is_file():
            continue
        digest.update(path.name.encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def as_known_at(declarations: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    """History as it was known at ``cutoff``: earlier declarations, outcomes recorded before it."""
    known = declarations.loc[declarations["declared_at"] < cutoff].copy()
    if "inspected_at" in known.columns:
        later = known["inspected_at"].notna() & (known["inspected_at"] >= cutoff)
        for col in (
            "inspected_at",
            "illicit",
            "offence_type",
            "revenue_recovered",
            "selection_reason",
        ):
            if col in known.columns:
                known.loc[later, col] = None
        known.loc[later, "inspected"] = False
    return known.reset_index(drop=True)


def _base_totals(
    n_codes: int,
    codes: np.ndarray,
    t_us: np.ndarray,
    horizon: int,
    out_codes: np.ndarray,
    out_t: np.ndarray,
    out_ill: np.ndarray,
    out_rev: np.ndarray,
) -> hist.EntityBase:
    old = t_us < horizon
    first = np.full(n_codes, hist.NO_TIME, dtype=np.int64)
    if old.any():
        firsts = pd.Series(t_us[old]).groupby(codes[old]).min()
        first[firsts.index.to_numpy()] = firsts.to_numpy()
    old_out = out_t < horizon
    return hist.EntityBase(
        first_seen_us=first,
        n_inspected=np.bincount(out_codes[old_out], minlength=n_codes).astype(np.int64),
        n_illicit=np.bincount(
            out_codes[old_out], weights=out_ill[old_out], minlength=n_codes
        ).astype(np.int64),
        revenue_cents=np.bincount(out_codes[old_out], weights=out_rev[old_out], minlength=n_codes)
        .round()
        .astype(np.int64),
    )


def build_entity_state(
    declarations: pd.DataFrame,
    contract: Contract,
    params: FeatureParams,
    *,
    cutoff: pd.Timestamp,
    manifest: FeatureManifest,
) -> EntityState:
    """Snapshot of everything the online features need, as known at ``cutoff``."""
    known = sort_declarations(as_known_at(declarations, cutoff))
    prep = prepare(known, contract, params)
    outcomes = outcome_events(known)
    cutoff_us = int(pd.Timestamp(cutoff).value // 1000)
    horizon = cutoff_us - params.max_window_days * hist.US_PER_DAY
    start_us = period_start_us(
        int(period_of(np.array([cutoff_us]), params.refit_period_days)[0]), params.refit_period_days
    )
    t = prep["t_us"]

    entities: dict[str, EntityTable] = {}
    for entity in entities_for(params, contract, manifest.inputs):
        codes, vocab = entity_codes(entity_keys(prep, entity))
        known = codes >= 0  # parcels with an unknown key belong to no entity
        out_known = known[outcomes["rows"]]
        out_codes = codes[outcomes["rows"]][out_known]
        out_t = outcomes["t_us"][out_known]
        out_ill = outcomes["illicit"][out_known]
        out_rev = outcomes["revenue_cents"][out_known]
        recent = known & (t >= horizon)
        recent_out = out_t >= horizon
        entities[entity.spec] = EntityTable(
            vocabulary=pd.Index(vocab.astype("str")),
            base=_base_totals(
                len(vocab), codes[known], t[known], horizon, out_codes, out_t, out_ill, out_rev
            ),
            decl_codes=codes[recent],
            decl_t_us=t[recent],
            decl_value_cents=prep["value_cents"][recent],
            out_codes=out_codes[recent_out],
            out_t_us=out_t[recent_out],
            out_illicit=out_ill[recent_out].astype(np.int64),
            out_revenue_cents=out_rev[recent_out],
        )
    recent_out = outcomes["t_us"] >= horizon
    zero = np.zeros(len(outcomes["t_us"]), dtype=np.int64)
    global_base = _base_totals(
        1,
        np.zeros(len(t), dtype=np.int64),
        t,
        horizon,
        zero,
        outcomes["t_us"],
        outcomes["illicit"],
        outcomes["revenue_cents"],
    )

    # learned components as batch uses them for the cutoff's period
    before = t < start_us
    refs = fit_references(
        prep["hs6"][before],
        prep["hs6_origin"][before],
        {k: prep[k][before] for k in LOG_COLUMNS},
    )
    text_model = _fit_text_model(prep, outcomes, before, start_us, params)
    return EntityState(
        cutoff_us=cutoff_us,
        period_start_us=start_us,
        params=params,
        contract=contract,
        manifest=manifest,
        entities=entities,
        global_base=global_base,
        global_out_t_us=outcomes["t_us"][recent_out],
        global_out_illicit=outcomes["illicit"][recent_out].astype(np.int64),
        global_out_revenue_cents=outcomes["revenue_cents"][recent_out],
        references=refs,
        text_model=text_model,
    )


def _fit_text_model(
    prep: Prepared,
    outcomes: dict[str, np.ndarray],
    before: np.ndarray,
    start_us: int,
    params: FeatureParams,
) -> TextModel:
    descriptions = prep["description"][before]
    inverse, uniques = pd.factorize(descriptions)
    vectorizer = make_vectorizer()
    try:
        U = vectorizer.fit_transform(uniques.astype(str)).tocsr()
        vocabulary = vectorizer.get_feature_names_out()
    except ValueError:  # no words at all before the period
        return TextModel.from_counts(
            TextCounts.zeros(0), np.array([], dtype=str), params.text_alpha
        )[0]
    hs6_codes, hs6_vocabulary = pd.factorize(prep["hs6"][before])
    counts = TextCounts.zeros(len(vocabulary), len(hs6_vocabulary))
    counts.add_declarations(
        U[inverse], chapter_index(prep["hs_chapter"][before]), hs6_codes.astype(np.int64)
    )
    known_out = outcomes["t_us"] < start_us
    rows = outcomes["rows"][
        known_out
    ]  # rows of prep; all declared before their result, so before start
    row_pos = np.searchsorted(np.flatnonzero(before), rows)
    counts.add_outcomes(U[inverse[row_pos]], outcomes["illicit"][known_out])
    return TextModel.from_counts(counts, vocabulary, params.text_alpha, np.asarray(hs6_vocabulary))[
        0
    ]


# ------------------------------------------------------------------------------------------
# Online computation
# ------------------------------------------------------------------------------------------


def _codes_for(table: EntityTable, keys: np.ndarray) -> np.ndarray:
    """Snapshot codes; unseen keys get fresh codes (shared by equal keys within the request);
    missing keys (None) stay -1: an unknown entity, not a new one."""
    codes = hist.codes_of(table.lookup, keys)
    unseen = codes < 0
    if unseen.any():
        fresh, _ = pd.factorize(keys[unseen])  # None -> -1, kept
        codes[unseen] = np.where(fresh >= 0, len(table.vocabulary) + fresh, -1)
    return codes


# Online, all entities are queried at once: entity e's codes are shifted by an offset that leaves
# room for MAX_NEW_KEYS unseen keys per request, so one sorted index answers every entity.
MAX_NEW_KEYS = 1 << 20


@dataclass
class _MergedSnapshot:
    offsets: dict[str, int]  # entity spec -> code offset
    declarations: hist.EventIndex  # all entities' recent declaration events, value_cents weights
    outcomes: hist.EventIndex  # all entities' recent outcome events
    base: hist.EntityBase  # all entities' bases, then one empty row (index ``empty_row``)
    base_offsets: dict[str, int]
    empty_row: int
    global_outcomes: hist.EventIndex


def _merged_snapshot(state: EntityState) -> _MergedSnapshot:
    """Sorted indexes of the snapshot's events, built once per loaded state and reused."""
    cached = getattr(state, "_merged", None)
    if cached is not None:
        return cached
    offsets, base_offsets = {}, {}
    decl_codes, decl_t, decl_v, out_codes, out_t, out_ill, out_rev = ([] for _ in range(7))
    bases = []
    offset = base_offset = 0
    for spec, table in state.entities.items():
        offsets[spec], base_offsets[spec] = offset, base_offset
        decl_codes.append(table.decl_codes + offset)
        decl_t.append(table.decl_t_us)
        decl_v.append(table.decl_value_cents)
        out_codes.append(table.out_codes + offset)
        out_t.append(table.out_t_us)
        out_ill.append(table.out_illicit)
        out_rev.append(table.out_revenue_cents)
        bases.append(table.base)
        offset += len(table.vocabulary) + MAX_NEW_KEYS
        base_offset += len(table.vocabulary)
    bases.append(hist.EntityBase.empty(1))

    def cat(arrays: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)

    merged = _MergedSnapshot(
        offsets=offsets,
        declarations=hist.EventIndex(cat(decl_codes), cat(decl_t), {"value_cents": cat(decl_v)}),
        outcomes=hist.EventIndex(
            cat(out_codes), cat(out_t), hist.outcome_weights(cat(out_ill), cat(out_rev))
        ),
        base=hist.EntityBase(
            first_seen_us=cat([b.first_seen_us for b in bases]),
            n_inspected=cat([b.n_inspected for b in bases]),
            n_illicit=cat([b.n_illicit for b in bases]),
            revenue_cents=cat([b.revenue_cents for b in bases]),
        ),
        base_offsets=base_offsets,
        empty_row=base_offset,
        global_outcomes=hist.EventIndex(
            np.zeros(len(state.global_out_t_us), dtype=np.int64),
            state.global_out_t_us,
            hist.outcome_weights(state.global_out_illicit, state.global_out_revenue_cents),
        ),
    )
    state._merged = merged  # type: ignore[attr-defined]
    return merged


def _history_online(
    prep: Prepared, state: EntityState, entities: list[Entity]
) -> dict[str, np.ndarray]:
    """Entity histories of a request: one merged query over the snapshot plus the request rows."""
    params = state.params
    t = prep["t_us"]
    n = len(t)
    if n > MAX_NEW_KEYS:
        raise ParcelriskError(f"at most {MAX_NEW_KEYS} declarations per online request, got {n}")
    merged = _merged_snapshot(state)
    prior = hist.global_prior(
        t,
        merged.global_outcomes,
        state.global_base,
        default_prior=params.default_prior,
        prior_strength=params.prior_strength,
    )
    codes, base_rows, identified = [], [], []
    for entity in entities:
        n_vocab = len(state.entities[entity.spec].vocabulary)
        local = _codes_for(state.entities[entity.spec], entity_keys(prep, entity))
        known = local >= 0
        in_snapshot = known & (local < n_vocab)
        # an unknown key queries the last code of the entity's range, which no event has
        # (fresh codes of a request stay below it); its results are forgotten below
        codes.append(
            np.where(known, local, n_vocab + MAX_NEW_KEYS - 1) + merged.offsets[entity.spec]
        )
        base_rows.append(
            np.where(in_snapshot, local + merged.base_offsets[entity.spec], merged.empty_row)
        )
        identified.append(known)
    all_codes = np.concatenate(codes)
    all_known = np.concatenate(identified)
    all_t = np.tile(t, len(entities))
    value_cents = np.tile(prep["value_cents"], len(entities))
    # the request's own rows: parcels of one request see each other as in batch (parcels with
    # an unknown key are events of no entity)
    declarations = hist.CombinedIndex(
        merged.declarations,
        hist.EventIndex(
            all_codes[all_known], all_t[all_known], {"value_cents": value_cents[all_known]}
        ),
    )
    base = merged.base.take(np.concatenate(base_rows))
    tiled = np.tile(prior, len(entities))
    values = hist.entity_history(
        "",
        all_codes,
        all_t,
        declarations,
        merged.outcomes,
        tiled,
        windows_days=params.windows_days,
        outcome_window_days=params.outcome_window_days,
        prior_strength=params.prior_strength,
        base=base,
    )
    hist.forget_unknown(values, all_known, tiled, "_hit_rate")
    result: dict[str, np.ndarray] = {}
    for i, entity in enumerate(entities):
        rows = slice(i * n, (i + 1) * n)
        for name, column in values.items():
            result[entity.prefix + name] = column[rows]
        if entity.spec == "consignee_id":
            split = split_shipment_features(codes[i], t, prep["value_eur"], declarations, params)
            hist.forget_unknown(split, identified[i], prior, "")
            result.update(split)
    return result


def _tokenizer(state: EntityState) -> tuple[Any, dict[str, int]]:
    """The text models' analyzer and token -> column map, validated once per loaded state."""
    cached = getattr(state, "_tokenizer", None)
    if cached is None:
        tokens = list(state.text_model.tokens)
        if tokens:
            vectorizer = make_vectorizer(tokens)
            vectorizer.transform([""])  # validate the vocabulary now, not on the first request
            cached = (vectorizer.build_analyzer(), dict(vectorizer.vocabulary_))
        else:  # no text model yet (tiny history): shapes only
            cached = (make_vectorizer().build_analyzer(), {})
        state._tokenizer = cached  # type: ignore[attr-defined]
    return cached


def _hs6_codes(state: EntityState, hs6: np.ndarray) -> np.ndarray:
    """Positions of ``hs6`` in the text model's HS6 vocabulary (-1: never seen)."""
    lookup = getattr(state, "_hs6_lookup", None)
    if lookup is None:
        lookup = {h: i for i, h in enumerate(state.text_model.hs6_vocabulary.tolist())}
        state._hs6_lookup = lookup  # type: ignore[attr-defined]
    return hist.codes_of(lookup, hs6)


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
    from scipy import sparse

    n = len(descriptions)
    n_tokens = np.empty(n, dtype=np.float64)
    vague = np.empty(n, dtype=np.float64)
    indices: list[int] = []
    indptr = [0]
    for i, text in enumerate(descriptions.tolist()):
        words = set(analyze(text))
        n_tokens[i] = len(words)
        vague[i] = float(words <= vague_terms)
        indices.extend(sorted(vocabulary[w] for w in words if w in vocabulary))
        indptr.append(len(indices))
    X = sparse.csr_matrix(
        (np.ones(len(indices), dtype=np.int64), np.asarray(indices, dtype=np.int32), indptr),
        shape=(n, len(vocabulary)),
    )
    return X, {"description_n_tokens": n_tokens, "description_vague": vague}


def _text_online(prep: Prepared, state: EntityState) -> dict[str, np.ndarray]:
    model = state.text_model
    chapters = chapter_index(prep["hs_chapter"])
    analyze, vocabulary = _tokenizer(state)
    X, shape = tokenize_online(
        prep["description"], analyze, vocabulary, frozenset(state.params.vague_terms)
    )
    hs6_codes = _hs6_codes(state, prep["hs6"])
    out = text_scores(
        X, model, chapters, hs6_codes, min_token_docs=state.params.min_reference_count
    )
    out.update(shape)
    return out


def _warnings(
    prep: Prepared, values: dict[str, np.ndarray], state: EntityState
) -> list[tuple[int, str]]:
    """Per-row notes on codes the model has not seen, read off the computed features."""
    # (a currency without an exchange rate is the rules' warning: features.intake.rules)
    warnings: list[tuple[int, str]] = []
    if not state.references.hs6.empty:
        for i in np.flatnonzero(values["reference_count_hs6"] == 0):
            warnings.append(
                (int(i), f"HS6 {prep['hs6'][i]} not seen in history: no reference price")
            )
    for spec in state.manifest.features:
        if spec.dtype != "category":
            continue
        column = spec.name.removeprefix("cat_")
        unknown = values[spec.name] < 0
        if unknown.any():  # nulls are not "unknown": ask pandas only when a code is missing
            unknown &= ~pd.isna(prep[column])
        for i in np.flatnonzero(unknown):
            warnings.append(
                (
                    int(i),
                    f"{column} {prep[column][i]!r} unknown to the model: scored as 'other'",
                )
            )
    for i in np.flatnonzero(prep["t_us"] < state.cutoff_us):
        warnings.append(
            (
                int(i),
                f"declared before the entity-state cutoff {state.cutoff}: history as of the cutoff used",
            )
        )
    return sorted(warnings)


@dataclass
class OnlineFeatures:
    """A request's features as arrays, before (and mostly instead of) a feature frame.

    The scoring path needs the model matrix and the reason context; building the feature frame
    (``build.assemble``) and reading the matrix back out of it cost about a millisecond per
    request, so the frame is only built on demand (``/explain``, parity tests).
    """

    declarations: FrameColumns | RecordColumns
    prep: Prepared
    values: dict[str, np.ndarray]
    manifest: FeatureManifest

    def __len__(self) -> int:
        return self.prep.n_rows

    def matrix(self) -> np.ndarray:
        """The model input matrix: ``manifest.matrix(self.frame())``, without the frame."""
        return self.manifest.matrix_of(self.values, len(self))

    @property
    def context(self) -> dict[str, np.ndarray]:
        """``REASON_CONTEXT`` columns (str or None per row), as the frame would hold them."""
        return {c: self.prep[c] for c in REASON_CONTEXT}

    def frame(self) -> pd.DataFrame:
        """ids + labels + reason context + manifest features (``build.assemble``)."""
        return assemble(self.prep, self.declarations.frame(), self.values, self.manifest)


def online_features(
    declarations: pd.DataFrame | FrameColumns | RecordColumns,
    state: EntityState,
    warnings: list[tuple[int, str]] | None = None,
) -> OnlineFeatures:
    """Features of new declarations (canonical contract frame or validated API models, no
    outcomes), in input order.

    Unknown codes never fail a declaration: they get priors, and if ``warnings`` is given,
    (row index, message) pairs are appended to it. (Not in ``DataFrame.attrs``: pandas deep-copies
    attrs on every column access.)
    """
    declarations = columns_of(declarations)
    missing = [e.name for e in state.contract.extras if e.name not in declarations]
    if missing:
        raise ParcelriskError(
            f"declarations lack the mapped extra field(s) the model uses: {', '.join(missing)}"
        )
    prep = prepare(declarations, state.contract, state.params)
    values: dict[str, Any] = {}
    categories = {s.name: s.categories for s in state.manifest.features if s.dtype == "category"}
    values.update(declaration_features(prep, categories, state.contract, state.params.timezone))
    entities = entities_for(state.params, state.contract, state.manifest.inputs)
    values.update(_history_online(prep, state, entities))
    logs = {k: prep[k] for k in LOG_COLUMNS}
    values.update(
        valuation_features(
            prep["value_eur"],
            logs,
            prep["hs6"],
            prep["hs6_origin"],
            state.references,
            de_minimis_eur=state.params.de_minimis_eur,
            min_reference_count=state.params.min_reference_count,
            per_item=uses_quantity(state.manifest),
        )
    )
    if "text" in state.manifest.groups():  # an export without item text has no text model
        values.update(_text_online(prep, state))
    if warnings is not None:
        warnings.extend(_warnings(prep, values, state))
    return OnlineFeatures(declarations, prep, values, state.manifest)


def compute_online_features(
    declarations: pd.DataFrame,
    state: EntityState,
    warnings: list[tuple[int, str]] | None = None,
) -> pd.DataFrame:
    """``online_features`` as a feature frame, in the layout of the batch ``features.parquet``."""
    return online_features(declarations, state, warnings).frame()
