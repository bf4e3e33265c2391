"""Corrupted declaration files: each fault writes one bad file from a clean seeded history.

A clean history comes from ``parcelrisk generate --parcels 3000 --days 30 --seed 3`` (or
``features.synthetic.generate_to_dir``). Every fault is a small function ``(clean, out) -> path``
that writes its file in ``out`` and returns the path to hand to the CLI; ``FAULTS`` lists them
with what each command must answer:

- ``refused``: exit code != 0, no traceback, no output file, and the output says ``says``;
- ``accepted``: exit code 0, every row kept, and the output says ``says`` (a warning, a count).

``validate`` and ``features build`` answer alike (the same gate); ``score`` reads declarations
only, so outcome faults do not concern it; ``train`` runs on what ``features build`` took, for
the faults marked ``train_on``.
The runner is ``scripts/reliability/data_faults.py``; the tests ``tests/test_features/
test_data_faults.py``.
"""

from __future__ import annotations

import inspect
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import pandas as pd

Verdict = Literal["refused", "accepted"]
COMMANDS = ("validate", "features build", "train", "score")
CLEAN_ROWS = 3000  # the clean history: parcelrisk generate --parcels 3000 --days 30 --seed 3
SEED = 3


@dataclass(frozen=True)
class Expect:
    """What one command must answer: its verdict, and a text its output must contain."""

    verdict: Verdict
    says: str = ""  # compared case-insensitively with stdout + stderr


@dataclass(frozen=True)
class Fault:
    """One corrupted file, how to write it and what each command must answer."""

    name: str
    write: Callable[[Path, Path], Path]
    gate: Expect  # validate and features build
    score: Expect | None = None  # default: as the gate
    train: Expect = Expect("accepted")  # only run on files features build took
    rows: int | None = CLEAN_ROWS  # rows an accepting command must keep (None: not checked)
    as_root: bool = True  # False: the fault cannot be made by root (root reads every file)
    # Train reads features, not the file: worth its ~30 s only where the fault changes which
    # labels or feature inputs exist (dialects and encodings give the clean file's frame).
    train_on: bool = False

    @property
    def doc(self) -> str:
        return (inspect.getdoc(self.write) or "").splitlines()[0]

    def expect(self, command: str) -> Expect:
        if command == "train":
            return self.train
        if command == "score":
            return self.score or self.gate
        return self.gate


FAULTS: list[Fault] = []


def fault(
    gate: Expect,
    *,
    score: Expect | None = None,
    train: Expect = Expect("accepted"),
    rows: int | None = CLEAN_ROWS,
    as_root: bool = True,
    train_on: bool = False,
) -> Callable[[Callable[[Path, Path], Path]], Callable[[Path, Path], Path]]:
    """Register the decorated writer in ``FAULTS`` under its function name."""

    def register(write: Callable[[Path, Path], Path]) -> Callable[[Path, Path], Path]:
        FAULTS.append(Fault(write.__name__, write, gate, score, train, rows, as_root, train_on))
        return write

    return register


def write_corpus(clean: Path, out: Path) -> dict[str, Path]:
    """Every fault's file in ``out`` (created): fault name -> the path to give the CLI."""
    out.mkdir(parents=True, exist_ok=True)
    return {f.name: f.write(Path(clean), out) for f in FAULTS}


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _history(clean: Path) -> pd.DataFrame:
    import pandas as pd

    return pd.read_parquet(clean)


def _as_text(df: pd.DataFrame) -> pd.DataFrame:
    """Every column as text the way an export writes it (so single cells can be corrupted)."""
    return df.astype("object").where(df.notna(), None).map(lambda v: None if v is None else str(v))


def _csv(df: pd.DataFrame, path: Path, **kwargs) -> Path:
    df.to_csv(path, index=False, **kwargs)
    return path


def _csv_text(clean: Path) -> str:
    return _history(clean).to_csv(index=False)


def _rows(n: int, k: int, seed: int = SEED) -> list[int]:
    return sorted(random.Random(seed).sample(range(n), k))


# --------------------------------------------------------------------------------------------
# Files that are not declaration files at all
# --------------------------------------------------------------------------------------------


@fault(Expect("refused", "cannot read file"))
def truncated_parquet(clean: Path, out: Path) -> Path:
    """A Parquet file cut at 60% of its bytes (an interrupted copy): no footer."""
    data = clean.read_bytes()
    path = out / "truncated_parquet.parquet"
    path.write_bytes(data[: int(len(data) * 0.6)])
    return path


@fault(Expect("refused", "row group 3 of 5 (rows 1,200 to 1,799 of 3,000) is damaged"))
def damaged_row_group(clean: Path, out: Path) -> Path:
    """A Parquet file with its footer intact and bytes of its third row group overwritten (a
    disk or transfer fault mid-file): every reader names the row group and its rows."""
    import pyarrow.parquet as pq

    path = out / "damaged_row_group.parquet"
    pq.write_table(pq.read_table(clean), path, row_group_size=CLEAN_ROWS // 5)  # metadata kept
    damage_row_group(path, 2)
    return path


def damage_row_group(path: Path, group: int) -> None:
    """Overwrite 40 bytes in the middle of row group ``group``'s first column chunk (0-based),
    leaving the footer intact: the file opens, that group cannot be read."""
    import pyarrow.parquet as pq

    column = pq.ParquetFile(path).metadata.row_group(group).column(0)
    data = bytearray(path.read_bytes())
    middle = column.data_page_offset + column.total_compressed_size // 2
    data[middle : middle + 40] = b"\xff" * 40
    path.write_bytes(bytes(data))


@fault(Expect("refused", "cut short"))
def truncated_csv(clean: Path, out: Path) -> Path:
    """A CSV cut in the middle of its last row: the row lacks its value, currency and outcomes."""
    text = _csv_text(clean)
    last = text.rstrip("\n").rfind("\n") + 1
    path = out / "truncated_csv.csv"
    path.write_text(text[: last + (len(text) - last) // 3])
    return path


@fault(Expect("refused", "cut short"))
def csv_cut_in_optional_columns(clean: Path, out: Path) -> Path:
    """A CSV cut in its last row after every required column, with optional ones moved last:
    read as blanks, the row would pass every rule, its last values lost without a word."""
    from features.intake.contract import FIELDS

    history = _history(clean)
    never_blank = {f.name for f in FIELDS if f.required and not f.nullable}
    required = [c for c in history.columns if c in never_blank]
    optional = [c for c in history.columns if c not in never_blank]
    text = history[required + optional].to_csv(index=False).rstrip("\n")
    last = text.rfind("\n") + 1
    # the last row up to (not including) the delimiter after its last required cell
    cut = last + len(",".join(text[last:].split(",")[: len(required)]))
    path = out / "csv_cut_in_optional_columns.csv"
    path.write_text(text[:cut])
    return path


@fault(Expect("refused", "empty"))
def empty_csv(clean: Path, out: Path) -> Path:
    """A CSV of zero bytes (an export that wrote nothing)."""
    path = out / "empty_csv.csv"
    path.write_bytes(b"")
    return path


@fault(Expect("refused", "empty"))
def zero_bytes_parquet(clean: Path, out: Path) -> Path:
    """A .parquet file of zero bytes."""
    path = out / "zero_bytes_parquet.parquet"
    path.write_bytes(b"")
    return path


@fault(Expect("refused", "no rows"), score=Expect("refused", "no rows"))
def header_only_csv(clean: Path, out: Path) -> Path:
    """A CSV with the header line and no rows."""
    path = out / "header_only_csv.csv"
    path.write_text(_csv_text(clean).splitlines()[0] + "\n")
    return path


@fault(Expect("refused", "cannot read file"))
def garbage_csv(clean: Path, out: Path) -> Path:
    """4 KiB of random bytes named .csv."""
    path = out / "garbage_csv.csv"
    path.write_bytes(random.Random(SEED).randbytes(4096))
    return path


@fault(Expect("refused", "cannot read file"))
def garbage_parquet(clean: Path, out: Path) -> Path:
    """4 KiB of random bytes named .parquet."""
    path = out / "garbage_parquet.parquet"
    path.write_bytes(random.Random(SEED + 1).randbytes(4096))
    return path


@fault(Expect("refused", "is a directory"))
def directory_not_file(clean: Path, out: Path) -> Path:
    """A directory named declarations.csv."""
    path = out / "directory_not_file" / "declarations.csv"
    path.mkdir(parents=True, exist_ok=True)
    return path


@fault(Expect("refused", "not found"))
def missing_file(clean: Path, out: Path) -> Path:
    """A path that does not exist."""
    path = out / "missing_file.csv"
    path.unlink(missing_ok=True)
    return path


@fault(Expect("refused", "permission denied"), as_root=False)
def unreadable_file(clean: Path, out: Path) -> Path:
    """A good Parquet file nobody may read (mode 000)."""
    path = out / "unreadable_file.parquet"
    shutil.copyfile(clean, path)
    os.chmod(path, 0)
    return path


# --------------------------------------------------------------------------------------------
# Text encodings and CSV dialects
# --------------------------------------------------------------------------------------------


@fault(Expect("accepted", "delimiter"))
def semicolon_delimited(clean: Path, out: Path) -> Path:
    """A CSV separated by ';' (a European spreadsheet export)."""
    return _csv(_history(clean), out / "semicolon_delimited.csv", sep=";")


@fault(Expect("accepted", "latin-1"))
def latin1_text(clean: Path, out: Path) -> Path:
    """A CSV in Latin-1 with accented descriptions ('café', 'Müller'): not UTF-8."""
    df = _history(clean)
    rows = _rows(len(df), 50)
    df.loc[rows, "description"] = "café crème Müller façade"
    path = out / "latin1_text.csv"
    path.write_bytes(df.to_csv(index=False).encode("latin-1"))
    return path


@fault(Expect("accepted", "the header is line 4"))
def title_above_header(clean: Path, out: Path) -> Path:
    """A report's title, its date and a blank line above the header (a spreadsheet's export)."""
    path = out / "title_above_header.csv"
    text = _history(clean).to_csv(index=False)
    path.write_text(f"Declarations export - March 2026\nGenerated 2026-04-01 06:00,\n\n{text}")
    return path


@fault(Expect("accepted"))
def utf8_bom(clean: Path, out: Path) -> Path:
    """A UTF-8 CSV starting with a byte-order mark (Excel's 'CSV UTF-8')."""
    return _csv(_history(clean), out / "utf8_bom.csv", encoding="utf-8-sig")


@fault(Expect("accepted"))
def crlf_line_endings(clean: Path, out: Path) -> Path:
    """A CSV with Windows line endings."""
    return _csv(_history(clean), out / "crlf_line_endings.csv", lineterminator="\r\n")


@fault(Expect("accepted"))
def embedded_newlines(clean: Path, out: Path) -> Path:
    """Quoted descriptions with line breaks inside them."""
    df = _history(clean)
    df.loc[_rows(len(df), 40), "description"] = 'wireless "pro" headset\nblack, boxed\r\nx2'
    return _csv(df, out / "embedded_newlines.csv")


@fault(Expect("refused", "NUL byte on line"))
def nul_bytes(clean: Path, out: Path) -> Path:
    """NUL bytes inside description and seller id cells."""
    df = _history(clean)
    rows = _rows(len(df), 10)
    df.loc[rows, "description"] = "usb\x00cable"
    df.loc[rows, "seller_id"] = "S\x00000053"
    return _csv(df, out / "nul_bytes.csv")


# --------------------------------------------------------------------------------------------
# Columns
# --------------------------------------------------------------------------------------------


@fault(Expect("refused", "origin_country: required column is missing"))
def missing_required_column(clean: Path, out: Path) -> Path:
    """No origin_country column."""
    return _csv(
        _history(clean).drop(columns=["origin_country"]), out / "missing_required_column.csv"
    )


@fault(Expect("accepted", "ignored"))
def extra_unknown_columns(clean: Path, out: Path) -> Path:
    """Columns the contract does not know (an index column, internal notes) beside the rest."""
    df = _history(clean)
    df.insert(0, "Unnamed: 0", range(len(df)))
    df["internal_note"] = "checked by desk 4"
    df["risk_score_legacy"] = 0.5
    return _csv(df, out / "extra_unknown_columns.csv")


@fault(Expect("accepted"), train_on=True)
def no_description_column(clean: Path, out: Path) -> Path:
    """No item text at all (the export has no description column)."""
    return _csv(_history(clean).drop(columns=["description"]), out / "no_description_column.csv")


@fault(Expect("accepted"), train_on=True)
def no_revenue_column(clean: Path, out: Path) -> Path:
    """Outcomes without revenue_recovered (and without offence types)."""
    df = _history(clean).drop(columns=["revenue_recovered", "offence_type"])
    return _csv(df, out / "no_revenue_column.csv")


@fault(Expect("accepted"), train_on=True)
def empty_identifiers(clean: Path, out: Path) -> Path:
    """A third of seller, consignee, operator and platform ids empty (unknown, not one entity)."""
    df = _history(clean)
    rows = _rows(len(df), 1000)
    for name in ("seller_id", "consignee_id", "operator_id", "platform_id"):
        df.loc[rows, name] = None
    return _csv(df, out / "empty_identifiers.csv")


@fault(Expect("refused", "declaration_id.unique"))
def duplicate_ids(clean: Path, out: Path) -> Path:
    """Ten declarations re-use the ids of ten others."""
    df = _history(clean)
    df.loc[range(100, 110), "declaration_id"] = df.loc[range(10), "declaration_id"].to_numpy()
    return _csv(df, out / "duplicate_ids.csv")


# --------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------


@fault(Expect("refused", "is not a number"))
def text_in_numeric(clean: Path, out: Path) -> Path:
    """Words and decimal commas in declared_value and gross_weight_kg."""
    df = _as_text(_history(clean))
    rows = _rows(len(df), 6)
    df.loc[rows[:3], "declared_value"] = "twelve"
    df.loc[rows[3:], "gross_weight_kg"] = "1,5"
    return _csv(df, out / "text_in_numeric.csv")


@fault(Expect("refused", "declared_value"))
def nan_inf_values(clean: Path, out: Path) -> Path:
    """inf and NaN declared values, NaN weights in a typed Parquet file."""
    df = _history(clean)
    rows = _rows(len(df), 6)
    df.loc[rows[:2], "declared_value"] = float("inf")
    df.loc[rows[2:4], "declared_value"] = float("nan")
    df.loc[rows[4:], "gross_weight_kg"] = float("nan")
    path = out / "nan_inf_values.parquet"
    df.to_parquet(path, index=False)
    return path


@fault(Expect("refused", "gross_weight_kg"))
def negative_weight(clean: Path, out: Path) -> Path:
    """Weights of -1 kg."""
    df = _history(clean)
    df.loc[_rows(len(df), 5), "gross_weight_kg"] = -1.0
    return _csv(df, out / "negative_weight.csv")


@fault(Expect("accepted", "declared_value.plausible"), train_on=True)
def absurd_value(clean: Path, out: Path) -> Path:
    """Declared values of 1e300 (a units or parsing accident upstream)."""
    df = _history(clean)
    df.loc[_rows(len(df), 5), "declared_value"] = 1e300
    return _csv(df, out / "absurd_value.csv")


@fault(Expect("accepted", "currency.rate"), train_on=True)
def unknown_currency(clean: Path, out: Path) -> Path:
    """ISO 4217 codes with no exchange rate (XAU, MNT) and lower-case ones (eur)."""
    df = _history(clean)
    rows = _rows(len(df), 30)
    df.loc[rows[:10], "currency"] = "MNT"
    df.loc[rows[10:20], "currency"] = "XAU"
    df.loc[rows[20:], "currency"] = "eur"
    return _csv(df, out / "unknown_currency.csv")


@fault(Expect("refused", "write CNY"))
def non_iso_currency(clean: Path, out: Path) -> Path:
    """Three capitals that are no ISO 4217 code: a legacy 'RMB' and an invented 'ZZZ'."""
    df = _history(clean)
    rows = _rows(len(df), 10)
    df.loc[rows[:5], "currency"] = "RMB"
    df.loc[rows[5:], "currency"] = "ZZZ"
    return _csv(df, out / "non_iso_currency.csv")


@fault(Expect("refused", "hs_code"))
def malformed_hs_codes(clean: Path, out: Path) -> Path:
    """HS codes with dots, letters and too few digits."""
    df = _history(clean)
    rows = _rows(len(df), 9)
    df.loc[rows[:3], "hs_code"] = "8517.79"
    df.loc[rows[3:6], "hs_code"] = "ABC123"
    df.loc[rows[6:], "hs_code"] = "85"
    return _csv(df, out / "malformed_hs_codes.csv")


@fault(Expect("refused", "description"))
def long_description(clean: Path, out: Path) -> Path:
    """A 10,000-character description."""
    df = _history(clean)
    df.loc[_rows(len(df), 2), "description"] = "very long text " * 666 + "end!!"
    return _csv(df, out / "long_description.csv")


# --------------------------------------------------------------------------------------------
# Dates
# --------------------------------------------------------------------------------------------


@fault(Expect("refused", "future"))
def future_dates(clean: Path, out: Path) -> Path:
    """Declarations dated in 2031 (a typo'd year)."""
    import pandas as pd

    df = _history(clean)
    rows = _rows(len(df), 4)
    df.loc[rows, "declared_at"] = df.loc[rows, "declared_at"] + pd.DateOffset(years=5)
    return _csv(df, out / "future_dates.csv")


@fault(Expect("refused", "is not a timestamp"))
def unparseable_dates(clean: Path, out: Path) -> Path:
    """Dates that are no dates: '31/02/2026', 'yesterday', '2026-13-45'."""
    df = _as_text(_history(clean))
    rows = _rows(len(df), 6)
    for row, value in zip(rows, ["31/02/2026", "yesterday", "2026-13-45"] * 2, strict=True):
        df.loc[row, "declared_at"] = value
    return _csv(df, out / "unparseable_dates.csv")


@fault(Expect("accepted"))
def mixed_time_zones(clean: Path, out: Path) -> Path:
    """The same instants written with different UTC offsets (+05:30, -08:00, Z)."""
    df = _history(clean)
    stamps = df["declared_at"]
    text = stamps.dt.strftime("%Y-%m-%dT%H:%M:%SZ").astype("object")
    india = stamps.dt.tz_convert("Asia/Kolkata").dt.strftime("%Y-%m-%dT%H:%M:%S%z")
    pacific = stamps.dt.tz_convert("America/Los_Angeles").dt.strftime("%Y-%m-%dT%H:%M:%S%z")
    text[df.index % 3 == 1] = india[df.index % 3 == 1]
    text[df.index % 3 == 2] = pacific[df.index % 3 == 2]
    df["declared_at"] = text
    return _csv(df, out / "mixed_time_zones.csv")


@fault(Expect("accepted"), train_on=True)
def local_dates_without_time(clean: Path, out: Path) -> Path:
    """Declaration and inspection dates as local days ('2026-01-05'), no time, no zone."""
    df = _history(clean)
    df["declared_at"] = df["declared_at"].dt.strftime("%Y-%m-%d")
    inspected = df["inspected_at"].notna()
    df["inspected_at"] = (
        df["inspected_at"].dt.strftime("%Y-%m-%d").where(inspected, None).astype("object")
    )
    return _csv(df, out / "local_dates_without_time.csv")


# --------------------------------------------------------------------------------------------
# Outcomes
# --------------------------------------------------------------------------------------------


def _inspect_all(df: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    was = df["inspected"].fillna(False).astype(bool)
    df["inspected"] = True
    df["inspected_at"] = df["inspected_at"].where(was, df["declared_at"] + pd.Timedelta(days=1))
    df["illicit"] = df["illicit"].where(was, False)
    df["revenue_recovered"] = df["revenue_recovered"].where(was, 0.0)
    df["selection_reason"] = df["selection_reason"].where(was, "census")
    return df


@fault(Expect("accepted"), train_on=True)
def every_parcel_inspected(clean: Path, out: Path) -> Path:
    """A census: every parcel inspected, with a result (an administration that checks all)."""
    path = out / "every_parcel_inspected.parquet"
    _inspect_all(_history(clean)).to_parquet(path, index=False)
    return path


@fault(Expect("accepted"), train=Expect("refused", "0 inspected parcels"), train_on=True)
def no_parcel_inspected(clean: Path, out: Path) -> Path:
    """A history in which no parcel was inspected: outcome columns present, all empty."""
    df = _history(clean)
    df["inspected"] = False
    for name in ("inspected_at", "illicit", "offence_type", "revenue_recovered"):
        df[name] = None
    df["selection_reason"] = None
    return _csv(df, out / "no_parcel_inspected.csv")


@fault(Expect("accepted"), train=Expect("refused", "0 inspected parcels"), train_on=True)
def no_outcome_columns(clean: Path, out: Path) -> Path:
    """Declarations only: every outcome column missing (a file to score, given to training)."""
    from features.intake.contract import OUTCOME_COLUMNS

    df = _history(clean).drop(columns=list(OUTCOME_COLUMNS))
    return _csv(df, out / "no_outcome_columns.csv")


@fault(Expect("refused", "inspected_at"), score=Expect("accepted"))
def outcome_before_declaration(clean: Path, out: Path) -> Path:
    """Inspection results recorded a day before the parcel was declared."""
    import pandas as pd

    df = _history(clean)
    rows = df.index[df["inspected"].fillna(False).astype(bool)][:5]
    df.loc[rows, "inspected_at"] = df.loc[rows, "declared_at"] - pd.Timedelta(days=1)
    return _csv(df, out / "outcome_before_declaration.csv")


# --------------------------------------------------------------------------------------------
# Parquet with columns of the wrong Arrow type
# --------------------------------------------------------------------------------------------


@fault(Expect("accepted"))
def parquet_numbers_as_text(clean: Path, out: Path) -> Path:
    """declared_value and quantity stored as Arrow strings, booleans as 'yes'/'no'."""
    df = _history(clean)
    df["declared_value"] = df["declared_value"].map(repr)
    df["quantity"] = df["quantity"].astype(str)
    df["ioss_prepaid"] = df["ioss_prepaid"].map({True: "yes", False: "no"})
    path = out / "parquet_numbers_as_text.parquet"
    df.to_parquet(path, index=False)
    return path


@fault(Expect("refused", "declared_at"))
def parquet_time_as_integer(clean: Path, out: Path) -> Path:
    """declared_at stored as int64 epoch milliseconds instead of an Arrow timestamp."""
    df = _history(clean)
    df["declared_at"] = df["declared_at"].astype("int64") // 1000
    path = out / "parquet_time_as_integer.parquet"
    df.to_parquet(path, index=False)
    return path


@fault(Expect("refused", "hs_code"))
def parquet_codes_as_integer(clean: Path, out: Path) -> Path:
    """hs_code as int64 (a spreadsheet ate the leading zeros of chapters 01-09)."""
    df = _history(clean)
    rows = _rows(len(df), 5)
    df.loc[rows, "hs_code"] = "0" + df.loc[rows, "hs_code"].str[1:]
    df["hs_code"] = df["hs_code"].astype("int64")
    path = out / "parquet_codes_as_integer.parquet"
    df.to_parquet(path, index=False)
    return path
