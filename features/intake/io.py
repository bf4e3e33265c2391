"""Declaration files: Parquet carries the contract's extras in its metadata; writes are atomic."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from features.intake.contract import (
    EXTRAS_METADATA_KEY,
    OUTCOME_COLUMNS,
    Contract,
    ContractError,
    ExtraColumn,
    coerce_declarations,
)

if TYPE_CHECKING:
    import pandas as pd

# --------------------------------------------------------------------------------------------
# Files: Parquet carries the extras in its metadata; writes are atomic.
# --------------------------------------------------------------------------------------------


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(tmp_path)`` then rename over ``path``, so a failure leaves the old file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_declarations(df: pd.DataFrame, path: Path, contract: Contract | None = None) -> None:
    """Write declarations to Parquet atomically, recording the extras in the file metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    contract = contract or Contract()
    table = pa.Table.from_pandas(df, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[EXTRAS_METADATA_KEY] = json.dumps(
        [{"name": e.name, "kind": e.kind, "description": e.description} for e in contract.extras]
    ).encode()
    table = table.replace_schema_metadata(meta)
    atomic_write(Path(path), lambda tmp: pq.write_table(table, tmp))


def read_contract(path: Path) -> Contract:
    """The contract (extras) recorded in a Parquet file written by ``write_declarations``."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(EXTRAS_METADATA_KEY)
    if not raw:
        return Contract()
    return Contract(tuple(ExtraColumn(**e) for e in json.loads(raw)))


def read_raw_declarations(path: Path) -> tuple[pd.DataFrame, Contract]:
    """Read a declarations file as it is (CSV as text), with the contract it carries."""
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise ContractError(f"file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path), read_contract(path)
        if suffix in (".csv", ".gz", ".txt"):
            # only empty cells are null: "NA" is Namibia, not a missing value
            return pd.read_csv(path, dtype="str", keep_default_na=False, na_values=[""]), Contract()
    except ContractError:
        raise
    except Exception as exc:  # pyarrow/pandas parse errors: report, don't trace back
        raise ContractError(f"{path}: cannot read file: {exc}") from exc
    raise ContractError(f"{path}: unsupported file type {suffix!r} (use .parquet or .csv)")


def read_declarations(path: Path, *, with_outcomes: bool = True) -> tuple[pd.DataFrame, Contract]:
    """Read a declarations file (Parquet or CSV) into canonical dtypes with its contract."""
    raw, contract = read_raw_declarations(path)
    if with_outcomes and not any(c in raw.columns for c in OUTCOME_COLUMNS):
        with_outcomes = False  # a file to score; a partial outcome set fails on `inspected` below
    return coerce_declarations(raw, with_outcomes=with_outcomes, contract=contract), contract
