"""Ingest: an administration's exports, read through one mapping, written as contract Parquet.

An administration exports by period (a file a month, a week, a day), so a history is a series
of files read with one mapping: each file is read on its own (``read_export``: its header's
aliases, its rows' numbers in messages, its quarantine), then they are joined here.

Exports of a series often overlap (each month's file re-exports the last days of the month
before, a file of "the last 30 days" taken every month). A declaration in two files is taken
once when its declaration fields are the same in each; if one of them carries its inspection
result and the others do not (the parcel was inspected after the earlier export was taken),
the one with the result is kept. Two files giving the same declaration other values, or other
results, are refused, naming both: which one is right is not known, and it is no row's fault
but the series', so ``--quarantine`` does not set it aside either.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from features.intake.contract import FIELDS, Contract, ContractError
from features.intake.io import atomic_write, spreadsheet_safe, write_declarations
from features.intake.mapping import (
    OUTPUT_SUFFIXES,
    REJECTED_REASONS,
    REJECTED_ROW,
    ExportRead,
    declarations_only,
    gate_fault_reasons,
    load_mapping,
    rates_to_eur,
    read_export,
    reason_counts,
    rejected_frame,
)
from features.params import DEFAULT_MAX_REJECTED

if TYPE_CHECKING:
    import pandas as pd

    from features.intake.rules import Limits

logger = logging.getLogger(__name__)

# Column the quarantine of several files adds before the row number: which file the row is in
REJECTED_FILE = "parcelrisk_source_file"
_OUTCOMES = tuple(f.name for f in FIELDS if f.scope == "outcome")
# a quarantine's counts, summed over the files (``_quarantine_summary``)
_QUARANTINE_KEYS = ("rows_read", "rows_rejected", "rejected_reasons")
# conflicting declarations named in a message
_SHOWN = 5


def ingest_file(
    *,
    source: Path | Sequence[Path],
    mapping_path: Path,
    out: Path,
    quarantine: Path | None = None,
    max_rejected: float = DEFAULT_MAX_REJECTED,
    limits: Limits | None = None,
    fx_to_base: dict[str, float] | None = None,
    timezone: str | None = None,
    for_scoring: bool = False,
) -> dict:
    """Read ``source`` (one export, or the exports of a series) with the mapping, join them
    and write contract Parquet to ``out`` atomically; the summary of what was read, converted
    and set aside.

    By default any value that does not convert stops the ingest, and the gate (``validate``)
    judges the rest later. With ``quarantine`` (a CSV path), rows that do not convert or that
    break one of the gate's fault rules (with ``limits``) are set aside there, as the source
    holds them with their row number and every reason, and the other rows are written: one
    bad declaration need not hold back a national export. More than ``max_rejected`` of a
    file's rows set aside refuses it all the same: that many point to the mapping or the
    export. ``fx_to_base`` (features.fx_to_base) converts a revenue_recovered the mapping
    gives in another currency to EUR; ``timezone`` (features.timezone) is what times read
    without a zone are warned against. ``for_scoring``: the declarations of a file to score,
    outcome fields of the mapping not read. Nothing is written unless every file is read.
    """
    sources = [Path(source)] if isinstance(source, (str, Path)) else [Path(s) for s in source]
    _check_paths(sources, Path(out), quarantine, max_rejected)
    mapping = load_mapping(mapping_path)
    if for_scoring:  # declarations to score: a history's mapping without its outcome fields
        mapping = declarations_only(mapping)
    eur_rates = rates_to_eur(mapping, fx_to_base)  # before reading: a missing rate is no row's
    several = len(sources) > 1
    reads = []
    for source in sources:
        try:
            reads.append(
                read_export(
                    source,
                    mapping,
                    eur_rates=eur_rates,
                    timezone=timezone,
                    quarantine=quarantine is not None,
                    max_rejected=max_rejected,
                    limits=limits,
                )
            )
        except ContractError as exc:
            # a message that does not name its file would leave the user to guess which one
            if several and not str(exc).startswith(str(source)):
                raise ContractError(f"{source}: {exc}") from exc
            raise
    if several:
        declarations, overlap = _join(reads, sources)
    else:
        declarations, overlap = reads[0].declarations, {}
    if quarantine is not None:
        rejected = _rejected_rows(reads, sources)
        atomic_write(quarantine, lambda tmp: spreadsheet_safe(rejected).to_csv(tmp, index=False))
    write_declarations(declarations, out, reads[0].contract)
    logger.info(
        "ingested %d rows from %s into %s",
        len(declarations),
        ", ".join(str(s) for s in sources),
        out,
    )
    summary = _summary(reads, sources, len(declarations), overlap)
    summary.update(_said_of_values(declarations))
    summary["output"] = str(out)
    if quarantine is not None:
        summary.update(_quarantine_summary(reads, quarantine))
    return summary


# Parties whose ids an export may write as names, in several spellings (pseudonymised ones,
# the consignee, are judged on the source's cells, before they are keyed:
# ``features.intake.mapping.personal_spellings``)
_NAMED_PARTIES = ("seller_id", "operator_id", "platform_id")


def _said_of_values(declarations: pd.DataFrame) -> dict[str, Any]:
    """What an ingest says of the values it wrote, beyond faults (probe 11, a postal export):
    ids that are one once case and spacing are ignored (each spelling a party of its own, a
    bad sender escaping by the case of its name), and declarations without an HS code."""
    import pandas as pd

    from features.intake.contract import fold_name

    said: dict[str, Any] = {}
    for name in _NAMED_PARTIES:
        if name not in declarations.columns:
            continue
        ids = pd.Series(declarations[name].dropna().unique(), dtype="string")
        folded = fold_name(ids).nunique()
        if folded < len(ids):
            said.setdefault("ids_one_once_folded", {})[name] = len(ids) - folded
            logger.warning(
                "%s: %d ids are %d once case and spacing are ignored ('Shop 1', 'SHOP  1'): "
                "if such spellings name one party, map the column with fold: true",
                name,
                len(ids),
                folded,
            )
    if "hs_code" in declarations.columns and (empty := int(declarations["hs_code"].isna().sum())):
        said["hs_code_empty"] = empty
        logger.warning(
            "hs_code: empty on %d of %d declarations: read without an HS code (no reference "
            "price, no HS-based features)",
            empty,
            len(declarations),
        )
    return said


def _check_paths(
    sources: list[Path], out: Path, quarantine: Path | None, max_rejected: float
) -> None:
    if not sources:
        raise ContractError("no export to ingest: name one file or more")
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise ContractError(
            f"--out {out}: ingest writes contract Parquet (it carries the extras and the "
            f"dtypes); name the output {out.with_suffix('.parquet').name}"
        )
    seen: dict[Path, Path] = {}
    for source in sources:
        if source.is_dir():
            raise ContractError(
                f"{source} is a directory: name its exports (e.g. {source}/*.csv), so which "
                "files make the history is said, not whatever else the directory holds"
            )
        resolved = source.resolve()
        if resolved in seen:
            raise ContractError(f"{source} is given twice (also as {seen[resolved]})")
        seen[resolved] = source
        if resolved == out.resolve():
            raise ContractError(f"--out {out} is one of the exports read: give another file")
        if not source.exists():  # before any is read: a typo in the last of twelve files
            raise ContractError(f"source file not found: {source}")
    if quarantine is not None:
        check_quarantine_path(quarantine, out, list(seen), max_rejected)


def check_quarantine_path(
    quarantine: Path,
    out: Path,
    sources: list[Path],
    max_rejected: float,
    source_is: str = "the source (an export read)",
) -> None:
    """Refuse a ``--quarantine`` file that could not be written or would overwrite an input
    or the output, and a ``--max-rejected`` that is no share, before anything is read
    (``ingest``, ``score``)."""
    if quarantine.suffix.lower() != ".csv":
        raise ContractError(
            f"--quarantine {quarantine}: the rows set aside are written as CSV (the source's "
            "columns as read, their row number and reasons); name it e.g. rejected.csv"
        )
    if not quarantine.parent.is_dir():
        raise ContractError(
            f"--quarantine {quarantine}: directory {quarantine.parent} does not exist"
        )
    if quarantine.resolve() == out.resolve():
        raise ContractError(f"--quarantine {quarantine} is --out: give another file")
    if quarantine.resolve() in {Path(s).resolve() for s in sources}:
        raise ContractError(f"--quarantine {quarantine} is {source_is}: give another file")
    if not (math.isfinite(max_rejected) and 0 <= max_rejected <= 1):
        raise ContractError(f"--max-rejected {max_rejected}: a share of the rows between 0 and 1")


def _join(reads: list[ExportRead], sources: list[Path]) -> tuple[pd.DataFrame, dict]:
    """The files' declarations as one frame, a declaration found in several files taken once
    (module docstring); and what the overlap was, for the summary."""
    joined, overlap = join_declarations(
        [r.declarations for r in reads],
        [str(s) for s in sources],
        reads[0].contract,
        with_outcomes=any(r.summary["with_outcomes"] for r in reads),
        hint="export periods that do not overlap, or correct the export that is wrong",
    )
    if overlap:
        logger.warning(
            "%d declaration(s) are in more than one export, the same in each: taken once "
            "(%d row(s) dropped; %d result(s) taken from a later file)",
            overlap["declarations_in_several_files"],
            overlap["overlapping_rows_dropped"],
            overlap["results_taken_from_a_later_file"],
        )
    return joined, overlap


def join_declarations(
    frames: Sequence[pd.DataFrame],
    names: Sequence[str],
    contract: Contract,
    *,
    with_outcomes: bool,
    hint: str,
    compared_outcomes: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Contract frames (``names``: where each comes from, for messages) as one, a declaration
    found in several of them taken once: the same declaration fields in each, the first copy
    holding a result kept (else the first). Copies with other declaration fields, or other
    results (``compared_outcomes``: the outcome fields compared, default all), raise
    ``ContractError`` naming them, their sources and the fields, then ``hint``. Also what the
    overlap was (empty when none)."""
    import numpy as np
    import pandas as pd

    from features.intake.contract import coerce_declarations

    # categories differ between files: concatenated they are text, coerced back to the contract
    joined = pd.concat(list(frames), ignore_index=True)
    joined = coerce_declarations(joined, with_outcomes=with_outcomes, contract=contract)
    file_of = np.repeat(np.arange(len(frames)), [len(f) for f in frames])
    ids = joined["declaration_id"].astype("object")
    files_per_id = (
        pd.DataFrame({"id": ids, "file": file_of}).drop_duplicates().groupby("id")["file"].size()
    )
    shared = ids.isin(files_per_id.index[files_per_id > 1]).to_numpy()
    if not shared.any():
        return joined, {}
    rows = joined[shared]
    outcome_columns = [c for c in _OUTCOMES if c in rows.columns]
    compared = [c for c in (compared_outcomes or outcome_columns) if c in outcome_columns]
    declaration_columns = [c for c in rows.columns if c not in outcome_columns]
    with_result = (
        rows["inspected"].eq(True).fillna(False).to_numpy(dtype=bool)
        if "inspected" in rows.columns
        else np.zeros(len(rows), dtype=bool)
    )
    keys = pd.DataFrame(
        {
            "id": ids[shared].to_numpy(),
            "declaration": _row_hashes(rows[declaration_columns]),
            "result": np.where(
                with_result,
                _row_hashes(rows[compared]) if compared else 0,
                np.uint64(0),
            ).astype(np.uint64),
            "with_result": with_result,
        },
        index=rows.index,
    )
    differ = keys.groupby("id")["declaration"].nunique().gt(1)
    results = keys[keys["with_result"]].groupby("id")["result"].nunique().gt(1)
    conflicts = differ.index[differ].tolist() + results.index[results].tolist()
    if conflicts:
        shown = [*declaration_columns, *compared]
        raise ContractError(
            _conflict_message(joined[shown], ids, file_of, list(names), conflicts, hint)
        )
    # one row per declaration: the first carrying a result, else the first
    order = keys.assign(position=np.arange(len(keys))).sort_values(
        ["with_result", "position"], ascending=[False, True], kind="stable"
    )
    kept = order.drop_duplicates("id").index
    dropped = rows.index.difference(kept)
    # a kept copy that is not the first is one kept for its result
    first = keys.index[~keys["id"].duplicated()]
    out = joined.drop(index=dropped).reset_index(drop=True)
    return out, {
        "declarations_in_several_files": len(files_per_id[files_per_id > 1]),
        "overlapping_rows_dropped": len(dropped),
        "results_taken_from_a_later_file": len(kept.difference(first)),
    }


def _row_hashes(frame: pd.DataFrame):
    """One 64-bit hash per row of ``frame``'s values (equal rows, equal hashes)."""
    import pandas as pd

    return pd.util.hash_pandas_object(frame, index=False).to_numpy()


def _conflict_message(
    joined: pd.DataFrame,
    ids: pd.Series,
    file_of,
    names: list[str],
    conflicts: list,
    hint: str,
) -> str:
    """Name the first declarations the sources disagree on: the sources and the fields."""
    import pandas as pd

    unique = list(dict.fromkeys(conflicts))
    lines = []
    for key in unique[:_SHOWN]:
        mask = (ids == key).to_numpy()
        rows = joined[mask]
        where = [names[i] for i in sorted(set(file_of[mask].tolist()))]
        fields = [
            c
            for c in rows.columns
            if rows[c]
            .astype("object")
            .map(lambda v: None if pd.isna(v) else str(v))
            .nunique(dropna=False)
            > 1
        ]
        shown = "; ".join(
            f"{c}: " + " vs ".join(str(v) for v in rows[c].astype("object").tolist())
            for c in fields[:3]
        )
        lines.append(f"{key} in {' and '.join(where)} ({shown})")
    more = f" (and {len(unique) - _SHOWN} more)" if len(unique) > _SHOWN else ""
    return (
        f"{len(unique)} declaration(s) are in more than one source with other values{more}: "
        + "; ".join(lines)
        + f". Which version is right is not known, so nothing is written: {hint} (a "
        "declaration given the same in each is taken once, and one with its inspection "
        "result beside one without takes the result)"
    )


def _rejected_rows(reads: list[ExportRead], sources: list[Path]) -> pd.DataFrame:
    """The rows set aside, as their sources hold them; with the file of each when several."""
    import pandas as pd

    if len(reads) == 1:
        return reads[0].rejected
    parts = []
    for read, source in zip(reads, sources, strict=True):
        part = read.rejected.copy()
        part.insert(0, REJECTED_FILE, str(source))
        parts.append(part)
    joined = pd.concat(parts, ignore_index=True)
    columns = [
        c for c in joined.columns if c not in (REJECTED_FILE, REJECTED_ROW, REJECTED_REASONS)
    ]
    return joined[[REJECTED_FILE, REJECTED_ROW, *columns, REJECTED_REASONS]]


def _summary(reads: list[ExportRead], sources: list[Path], rows: int, overlap: dict) -> dict:
    """One file's summary as ``read_export`` gives it; for several, the totals and each file's."""
    if len(reads) == 1:
        return {k: v for k, v in reads[0].summary.items() if k not in _QUARANTINE_KEYS}
    first = reads[0].summary
    return {
        "rows": rows,
        "files": len(reads),
        "columns_mapped": first["columns_mapped"],
        "constants": first["constants"],
        "with_outcomes": first["with_outcomes"],
        "extras": first["extras"],
        **overlap,
        "per_file": {
            str(source): read.summary for source, read in zip(sources, reads, strict=True)
        },
    }


def _quarantine_summary(reads: list[ExportRead], path: Path) -> dict:
    from collections import Counter

    read = sum(r.summary["rows_read"] for r in reads)
    rejected = sum(r.summary["rows_rejected"] for r in reads)
    reasons: Counter = Counter()
    for r in reads:
        reasons.update(r.summary["rejected_reasons"])
    if rejected:
        logger.warning(
            "%d of %d row(s) set aside in %s, each with its reasons; the others were ingested. "
            "Most common: %s",
            rejected,
            read,
            path,
            "; ".join(f"{key} ({n})" for key, n in reasons.most_common(3)),
        )
    return {
        "rows_read": read,
        "rows_rejected": rejected,
        "quarantine": str(path),
        "rejected_reasons": dict(reasons.most_common()),
    }


def set_aside_faulty_rows(
    source: Path,
    out: Path,
    quarantine: Path,
    limits: Limits,
    max_rejected: float = DEFAULT_MAX_REJECTED,
) -> dict:
    """A contract file's declarations that pass the gate's fault rules written to ``out``
    (contract Parquet), the others to ``quarantine`` as the file holds them, with their row
    number and every reason: how ``score --quarantine`` scores a file holding a few bad
    declarations. Outcome columns are not judged (declarations to score carry none). More
    than ``max_rejected`` of the rows set aside refuses the file, as ingest does."""
    import numpy as np

    from features.intake.io import read_raw_declarations
    from features.intake.validation import check_declarations

    raw, contract = read_raw_declarations(source)
    result, canonical = check_declarations(raw, contract, limits, with_outcomes=False)
    reasons = gate_fault_reasons(result.findings)
    share = len(reasons) / max(len(raw), 1)
    if share > max_rejected:
        first = min(reasons)
        raise ContractError(
            f"{source}: {len(reasons)} of {len(raw)} rows ({share:.2%}) break the gate's fault "
            f"rules, more than --max-rejected {max_rejected:.2%}: so many point to the export, "
            f"not to a few bad declarations, so nothing is scored. Row {first + 1}: "
            + "; ".join(message for _, message in reasons[first])
        )
    rejected = rejected_frame(raw, reasons, np.arange(len(raw)) + 1)
    kept = np.setdiff1d(np.arange(len(raw)), sorted(reasons))
    outcomes = [c for c in _OUTCOMES if c in canonical.columns]
    write_declarations(
        canonical.iloc[kept].drop(columns=outcomes).reset_index(drop=True), out, contract
    )
    atomic_write(quarantine, lambda tmp: spreadsheet_safe(rejected).to_csv(tmp, index=False))
    if reasons:
        logger.warning(
            "%d of %d row(s) set aside in %s, each with its reasons; the others are scored",
            len(reasons),
            len(raw),
            quarantine,
        )
    return {
        "rows_read": len(raw),
        "rows_rejected": len(reasons),
        "quarantine": str(quarantine),
        "rejected_reasons": reason_counts(reasons),
    }


__all__ = [
    "REJECTED_FILE",
    "check_quarantine_path",
    "ingest_file",
    "join_declarations",
    "set_aside_faulty_rows",
]
