"""A batch of declarations as columns: from API records or a frame to the arrays features read.

``declarations_frame`` builds a canonical frame from ``Declaration`` models (the API path);
``FrameColumns`` / ``RecordColumns`` give feature code the same numpy view of a frame or of a
request's records, so the online path never builds a frame it does not need.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from features.intake.contract import (
    DECLARATION_FIELDS,
    Contract,
    ContractError,
    DeclarationBase,
    ExtraColumn,
    Kind,
    coerce_declarations,
    empty_declarations,
    fold_name,
    identifier_faults,
    parse_number,
    parse_text,
    read_ascii_digits,
)
from features.intake.pseudonym import process_key, pseudonymise

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


def declarations_frame(records: list[Any], contract: Contract | None = None) -> pd.DataFrame:
    """Build a canonical batch from ``Declaration`` models or plain dicts (API -> batch path).

    Validated models take a direct path: pydantic already checked types, domains, case and
    whitespace, so each column is built once in its canonical dtype (a few hundred microseconds
    instead of a full ``coerce_declarations`` pass, which matters per HTTP request). Plain dicts
    get the full coercion.
    """
    import pandas as pd

    contract = contract or Contract()
    if records and all(isinstance(r, DeclarationBase) for r in records):
        return _frame_from_models(records, contract)
    rows = [r.model_dump() if isinstance(r, BaseModel) else dict(r) for r in records]
    df = pd.DataFrame(rows) if rows else empty_declarations(False, contract)
    return coerce_declarations(df, with_outcomes=False, contract=contract)


def python_values(column: pd.Series) -> list[Any]:
    """A column as a list of Python values, None where missing.

    Arrow-backed strings convert through Arrow itself: pandas' object conversion goes through a
    per-block ``astype`` that costs ~50 us a column, paid per column per request online.
    """
    import pandas as pd

    if isinstance(column.dtype, pd.StringDtype) and column.dtype.storage == "pyarrow":
        return column.array.__arrow_array__().to_pylist()
    values = column.to_numpy(dtype=object)
    missing = pd.isna(values)
    if missing.any():
        values = values.copy()  # may be a read-only view of an object column
        values[missing] = None
    return values.tolist()


def frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """One dict of Python values per row (ISO-8601 UTC timestamps with microseconds and "Z",
    None for missing): the canonical form declarations are stored and carried in.

    Column by column through ``python_values`` (Arrow strings convert in C), then zipped into
    rows: pandas' ``to_json`` or an object conversion of the whole frame costs about a
    millisecond of fixed overhead per call, which every single-declaration request would pay.
    """
    import numpy as np
    import pandas as pd

    columns: dict[str, list[Any]] = {}
    for name, col in frame.items():
        if isinstance(col.dtype, pd.DatetimeTZDtype):
            stamps = col.to_numpy(dtype="datetime64[us]")  # tz-aware -> UTC wall time
            text = np.char.add(np.datetime_as_string(stamps, unit="us"), "Z").astype(object)
            text[np.isnat(stamps)] = None
            columns[str(name)] = text.tolist()
        else:
            columns[str(name)] = python_values(col)
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def text_array(values: Any) -> Any:
    """A pandas ``str`` array (Arrow-backed, NaN for missing) from Python str / None values.

    Built by Arrow directly, at a fifth of the cost of ``pd.array(values, dtype="str")`` and
    its per-element coercion; the values must already be str or None.
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    return pd.arrays.ArrowStringArray(
        pa.array(values, type=pa.large_string(), from_pandas=True),
        dtype=pd.StringDtype("pyarrow", na_value=np.nan),  # what dtype="str" is in pandas 3
    )


def models_as_json(records: list[Any]) -> list[str]:
    """Validated ``Declaration`` models as the JSON the audit store keeps for them.

    The same text as ``serving.scoring.declarations_as_json`` of their canonical frame (field
    order, UTC timestamps with microseconds and "Z", null for missing), without building the
    frame's column lists: per request that is ~0.4 ms less. Contract extras are not handled
    (their coercion lives in the frame); callers with extras use the frame path.
    """
    import json
    from datetime import UTC

    names = [f.name for f in DECLARATION_FIELDS]
    stamps = {f.name for f in DECLARATION_FIELDS if f.kind == "datetime"}
    out = []
    for record in records:
        row = {}
        for name in names:
            value = getattr(record, name)
            if name in stamps and value is not None:
                value = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            row[name] = value
        out.append(json.dumps(row, default=str))
    return out


_NUMPY_KINDS = {"int": "int64", "float": "float64", "bool": "bool"}
_NULLABLE_KINDS = {"int": "Int64", "float": "float64", "bool": "boolean"}


def _typed_column(values: list[Any], kind: Kind) -> Any:
    """Validated values of one int/float/bool field as an array (nullable dtype if any None)."""
    import numpy as np
    import pandas as pd

    if kind == "bool" or any(v is None for v in values):  # canonical booleans are nullable
        return pd.array(values, dtype=_NULLABLE_KINDS[kind])
    return np.asarray(values, dtype=_NUMPY_KINDS[kind])


def _whole_number_text(value: Any) -> Any:
    """A whole number sent for a text extra as the text of the integer (39.0: "39"); any other
    value as it is."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def extra_column(values: list[Any], extra: ExtraColumn) -> pd.Series:
    """Raw values of a mapped extra (as sent to the API) in the extra's canonical dtype.

    Raises ``ContractError`` naming the field for a numeric extra that is not a number.
    """
    import pandas as pd

    raw = pd.Series(values, dtype=object, name=extra.name)
    if extra.kind != "numeric":
        # a JSON number is read as a file's numeric cell is: 39.0 as 39 (a client serialising a
        # column with gaps writes floats). Keyed as "39.0" (folded, "39. 0"), a tax number was
        # another person and a broker another broker (probe 35).
        raw = raw.map(_whole_number_text)
        text = fold_name(parse_text(raw)) if extra.fold else parse_text(raw)
        if not extra.personal:
            return text
        if extra.kind == "entity" and (faults := identifier_faults(extra.name, text)):
            # judged before it is keyed, as a file's are: the rules see only the pseudonym, so
            # a control or bidi character in a tax number went in with 200 (probe 35)
            problem, _ = faults[0]
            raise ContractError(f"{extra.name}: {problem} (personal: value not shown)")
        # as a file's personal extras are read (contract.parse_declarations)
        return pseudonymise(text, process_key())
    # a number sent as text in Arabic-Indic digits (١٢٫٥) is read as a mapped file's
    numbers, problems = parse_number(raw.map(_in_ascii_digits), "float")
    for bad, problem in problems:
        raise ContractError(f"{extra.name}: {raw[bad].iloc[0]!r} {problem}")
    return numbers


def _in_ascii_digits(value: Any) -> Any:
    return read_ascii_digits(value) if isinstance(value, str) else value


def _frame_from_models(records: list[Any], contract: Contract) -> pd.DataFrame:
    import pandas as pd

    columns: dict[str, Any] = {}
    for f in DECLARATION_FIELDS:
        values = [getattr(r, f.name) for r in records]
        if f.kind in ("str", "category"):
            columns[f.name] = text_array(values)  # pydantic guarantees str or None here
        elif f.kind == "datetime":
            # utc=True: declarations of one batch may carry different UTC offsets
            columns[f.name] = pd.to_datetime(values, utc=True).astype("datetime64[us, UTC]")
        else:
            columns[f.name] = _typed_column(values, f.kind)
    for extra in contract.extras:
        columns[extra.name] = extra_column(
            [(r.model_extra or {}).get(extra.name) for r in records], extra
        )
    return pd.DataFrame(columns, copy=False)


# --------------------------------------------------------------------------------------------
# Column sources: what feature code reads of a batch of declarations, as numpy arrays.
# --------------------------------------------------------------------------------------------

# From this many rows, text columns are built once per distinct value (``FrameColumns.text``);
# below it (an online request) the per-row conversion is cheaper than factorising.
DISTINCT_FROM_ROWS = 1000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_NAT_US = -(2**63)  # what NaT is as int64 microseconds
_DECLARATION_KINDS = {f.name: f.kind for f in DECLARATION_FIELDS}
Coding = tuple["np.ndarray", "np.ndarray"]  # codes per row (-1: missing), the distinct values


def with_default_index(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` on a 0..n-1 RangeIndex (already so online: no copy)."""
    import pandas as pd

    index = frame.index
    if isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1:
        return frame
    return frame.reset_index(drop=True)


class FrameColumns:
    """Columns of a canonical declarations frame (``coerce_declarations``) as numpy arrays."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame = with_default_index(frame)

    def __len__(self) -> int:
        return len(self._frame)

    def __contains__(self, name: str) -> bool:
        return name in self._frame.columns

    def text(self, name: str) -> np.ndarray:
        """Object array of str, None where missing."""
        return self.text_codes(name)[0]

    def text_codes(self, name: str) -> tuple[np.ndarray, Coding | None]:
        """``text`` and, from ``DISTINCT_FROM_ROWS`` rows on, the factorisation it was built
        from: int64 codes per row in order of first appearance (-1 where missing) and the
        distinct values, what ``pd.factorize`` of the returned array gives. Feature code
        codes its key columns; at a million rows a second factorisation of the strings costs
        ~0.1 s a column."""
        import numpy as np
        import pandas as pd

        column = self._frame[name]
        if len(column) < DISTINCT_FROM_ROWS:
            return np.array(python_values(column), dtype=object), None
        # One Python str per distinct value, shared by its rows: a million declarations hold a
        # few hundred countries, offices or currencies, and a str per row costs ~55 MB a
        # column (and the time to make it). Equal values, so features cannot tell.
        codes, uniques = pd.factorize(column)
        codes = codes.astype(np.int64, copy=False)
        if len(uniques) > len(column) // 4:
            # mostly distinct (ids of consignees...): little to share, and rows pointing at
            # scattered strings made the entity families ~20% slower than strings in row order
            values = np.array(python_values(column), dtype=object)
            first = first_rows(codes)
            return values, None if first is None else (codes, values[first])
        distinct = np.array([*python_values(pd.Series(uniques)), None], dtype=object)
        coding = (codes, distinct[:-1]) if first_rows(codes) is not None else None
        return distinct[codes], coding

    def numbers(self, name: str) -> np.ndarray:
        """float64 (bools as 0/1), NaN where missing."""
        import numpy as np

        return self._frame[name].to_numpy(dtype=np.float64, na_value=np.nan)

    def t_us(self, name: str) -> np.ndarray:
        """A tz-aware timestamp column as int64 UTC microseconds since the epoch (NaT: min)."""
        import numpy as np

        return self._frame[name].to_numpy(dtype="datetime64[us]").view(np.int64)

    def missing(self, name: str) -> np.ndarray:
        """Where the column holds no value."""
        return self._frame[name].isna().to_numpy()

    def frame(self) -> pd.DataFrame:
        return self._frame


def first_rows(codes: np.ndarray) -> np.ndarray | None:
    """The row where each code first appears, if the codes are numbered in order of first
    appearance (-1 aside) as ``pd.factorize`` numbers them; None if they are not (Arrow
    numbers a column read as a dictionary by its dictionary)."""
    import numpy as np

    if not len(codes):
        return np.zeros(0, dtype=np.int64)
    seen = np.maximum.accumulate(codes)  # the highest code so far: a new code is one more
    step = np.diff(seen)
    if seen[0] > 0 or (len(step) and step.max() > 1):
        return None
    first = np.flatnonzero(step) + 1
    return first if seen[0] < 0 else np.concatenate(([0], first))


class RecordColumns:
    """Validated ``Declaration`` models of one request, read column by column.

    The online path reads a dozen columns of a handful of declarations; building the canonical
    frame (~0.5 ms) to read them back out of it (~0.4 ms) was a fifth of a small request's
    scoring time. Values are the frame's (``declarations_frame``): pydantic has already
    checked and normalised them. Contract extras, which need the frame's coercion, and
    ``frame()`` itself go through the frame, built once on demand.
    """

    def __init__(self, records: list[Any], contract: Contract | None = None) -> None:
        self.records = records
        self.contract = contract or Contract()
        self._frame: pd.DataFrame | None = None

    def __len__(self) -> int:
        return len(self.records)

    def __contains__(self, name: str) -> bool:
        return name in _DECLARATION_KINDS or any(e.name == name for e in self.contract.extras)

    def _values(self, name: str) -> list[Any]:
        return [getattr(r, name) for r in self.records]

    def text_codes(self, name: str) -> tuple[np.ndarray, Coding | None]:
        """``text``; a request's handful of rows are not factorised (see ``FrameColumns``)."""
        return self.text(name), None

    def text(self, name: str) -> np.ndarray:
        import numpy as np

        if name not in _DECLARATION_KINDS:
            return FrameColumns(self.frame()).text(name)
        out = np.empty(len(self), dtype=object)  # np.array(list) could infer 2-D
        out[:] = self._values(name)
        return out

    def numbers(self, name: str) -> np.ndarray:
        import numpy as np

        kind = _DECLARATION_KINDS.get(name)
        if kind not in _NUMPY_KINDS:
            return FrameColumns(self.frame()).numbers(name)
        values = self._values(name)
        if any(v is None for v in values):  # optional fields: missing is NaN, never 0/False
            return np.array([np.nan if v is None else float(v) for v in values])
        return np.asarray(values, dtype=_NUMPY_KINDS[kind]).astype(np.float64)

    def t_us(self, name: str) -> np.ndarray:
        """Exact integer microseconds (the API requires a time zone on every timestamp)."""
        import numpy as np

        if _DECLARATION_KINDS.get(name) != "datetime":
            return FrameColumns(self.frame()).t_us(name)
        return np.fromiter(
            (_NAT_US if v is None else (v - _EPOCH) // _MICROSECOND for v in self._values(name)),
            dtype=np.int64,
            count=len(self),
        )

    def missing(self, name: str) -> np.ndarray:
        """Where the field holds no value (None; NaN for numbers)."""
        import numpy as np

        if name not in _DECLARATION_KINDS:
            return FrameColumns(self.frame()).missing(name)
        return np.fromiter(
            (v is None or v != v for v in self._values(name)), dtype=bool, count=len(self)
        )

    def frame(self) -> pd.DataFrame:
        """The canonical frame ``declarations_frame`` builds of the same models."""
        if self._frame is None:
            self._frame = _frame_from_models(self.records, self.contract)
        return self._frame


class StoredColumns(RecordColumns):
    """Declarations as the decision store keeps them (``models_as_json``, parsed JSON objects),
    read column by column without validating them again.

    Every worker appends the other workers' decisions to its live state (``ScoringRuntime
    .catch_up``). Their stored JSON is the canonical form a ``Declaration`` model was
    serialised from (stripped, case-folded, pseudonymised, UTC times with "Z"), so validating
    it again gives back the same values: it cost ~10 us a declaration, two thirds of reading
    the other workers' decisions into the live state (1.5 ms per 100, 0.5 ms without it).
    ``records`` (validated models) and ``frame()`` are still there, built on first use, for
    what needs them (contract extras, rules).
    """

    def __init__(self, rows: list[dict[str, Any]], contract: Contract | None = None) -> None:
        self.rows = rows
        self.contract = contract or Contract()
        self._frame = None
        self._records: list[Any] | None = None

    @property
    def records(self) -> list[Any]:  # type: ignore[override]
        if self._records is None:
            from features.intake.contract import Declaration

            self._records = [Declaration.model_validate(row) for row in self.rows]
        return self._records

    def __len__(self) -> int:
        return len(self.rows)

    def _values(self, name: str) -> list[Any]:
        return [row.get(name) for row in self.rows]

    def t_us(self, name: str) -> np.ndarray:
        import numpy as np

        if _DECLARATION_KINDS.get(name) != "datetime":
            return FrameColumns(self.frame()).t_us(name)
        return np.fromiter(
            (_NAT_US if v is None else _stored_time_us(v, name) for v in self._values(name)),
            dtype=np.int64,
            count=len(self.rows),
        )


def _stored_time_us(text: str, name: str) -> int:
    """Microseconds since the epoch of a stored time ("2026-03-01T10:00:00.000000Z")."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:  # never written so: every stored time carries its zone
        raise ContractError(f"stored declaration: {name} {text!r} carries no time zone")
    return (value - _EPOCH) // _MICROSECOND


def columns_of(
    declarations: pd.DataFrame | FrameColumns | RecordColumns,
) -> FrameColumns | RecordColumns:
    """A column source for a canonical frame or validated models (returned as is)."""
    if isinstance(declarations, (FrameColumns, RecordColumns)):
        return declarations
    return FrameColumns(declarations)
