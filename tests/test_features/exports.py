"""Helpers of the ingest tests: an export written as text, ingested through a mapping."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.intake.ingest import ingest_file


def ingest_text(tmp_path: Path, export: str, mapping: str) -> tuple[dict, pd.DataFrame]:
    """``ingest`` of ``export`` (CSV text) through ``mapping`` (YAML text): the summary and
    the contract Parquet written, indexed by declaration id."""
    source, spec = tmp_path / "export.csv", tmp_path / "mapping.yaml"
    source.write_text(export)
    spec.write_text(mapping)
    out = tmp_path / "out.parquet"
    summary = ingest_file(source=source, mapping_path=spec, out=out)
    return summary, pd.read_parquet(out).set_index("declaration_id")
