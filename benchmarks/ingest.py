"""Benchmark: `parcelrisk ingest` of an administration's export as the CLI runs it.

The French-style example export (data/examples/foreign_declarations.csv, its mapping) is
replicated to ``--rows`` rows with unique ids and ingested three ways: one file; the same rows
as four quarterly files (a series); as an item-level export (three goods items per
declaration, the mapping's ``items:`` block collapsing them); and as the same records in
NDJSON and in XML (a message store: one element per declaration, its columns as children;
NDJSON read a line at a time, XML streamed, the records of both converted a
chunk at a time). Then `parcelrisk mapping draft`
drafts a mapping for the one file and tries it (ingest's reader and the gate). Each command is
its own process.

Prints JSON: wall seconds, peak resident memory of the process, rows per second, the rows
written (for the draft: the required fields it did not find, and its try's verdict).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "data" / "examples" / "foreign_declarations.csv"
MAPPING = ROOT / "data" / "examples" / "mapping.yaml"
ITEM_COLUMNS = ["CODE_SH", "DESIGNATION", "QTE", "POIDS_G", "VALEUR"]
ITEMS_BLOCK = """
items:
  declared_value: sum
  gross_weight_kg: sum
  quantity: sum
  revenue_recovered: agree
  insured_value: agree
"""


def _exports(rows: int, work: Path) -> None:
    import numpy as np
    import pandas as pd

    example = pd.read_csv(EXAMPLE, sep=";", dtype=str, keep_default_na=False)
    frame = pd.concat([example] * (rows // len(example) + 1), ignore_index=True).head(rows)
    frame["NUM_DECL"] = [f"FR26{i:08d}" for i in range(rows)]
    frame["DESTINATAIRE"] = [f"CSG-{i % 200_000:06d}" for i in range(rows)]
    one = work / "all.csv"
    frame.to_csv(one, sep=";", index=False)
    quarters = []
    for q in range(4):
        path = work / f"q{q + 1}.csv"
        frame.iloc[q * rows // 4 : (q + 1) * rows // 4].to_csv(path, sep=";", index=False)
        quarters.append(path)
    # three goods items per declaration: its fields repeated on each item row
    first = (np.arange(rows) // 3) * 3
    items = frame.copy()
    declaration = [c for c in frame.columns if c not in ITEM_COLUMNS]
    items[declaration] = frame[declaration].iloc[first].to_numpy()
    item_file = work / "items.csv"
    items.to_csv(item_file, sep=";", index=False)
    # the same records as a message store writes them: NDJSON, and XML elements
    records = frame.to_dict("records")
    with open(work / "all.ndjson", "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    # and as an API dump: one document, an array of records, a record a line
    with open(work / "all.json", "w", encoding="utf-8") as fh:
        fh.write("[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n]\n")
    # and as a paged API's document: the records under a key, beside the page's metadata
    with open(work / "keyed.json", "w", encoding="utf-8") as fh:
        fh.write('{"meta": {"page": 1, "pages": 1},\n"declarations": [\n')
        fh.write(",\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n]}\n")
    from xml.sax.saxutils import escape

    with open(work / "all.xml", "w", encoding="utf-8") as fh:
        fh.write('<?xml version="1.0" encoding="UTF-8"?>\n<Declarations>\n')
        for r in records:
            cells = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in r.items() if v != "")
            fh.write(f"<Declaration>{cells}</Declaration>\n")
        fh.write("</Declarations>\n")


def _run(*args: str) -> tuple[str, str, float, int]:
    """One `parcelrisk` process: its stdout, stderr, wall seconds and own peak memory in MB
    (``os.wait4``)."""
    command = [sys.executable, "-m", "serving.main", *args]
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, cwd=ROOT)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        stdout.seek(0)
        stderr.seek(0)
        out, err = stdout.read(), stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{args[0]} failed: {err[-2000:]}")
    return out, err, seconds, round(usage.ru_maxrss / 1024)


def _draft(source: Path) -> dict:
    """`parcelrisk mapping draft` of one export, its try included."""
    _, err, seconds, peak = _run("mapping", "draft", str(source))
    summary = json.loads(err[err.index('{\n "mapped"') : err.rindex("}") + 1])
    return {
        "seconds": round(seconds, 2),
        "peak_rss_mb": peak,
        "required_not_found": summary["required_not_found"],
        "tried": summary["tried"].replace(str(source), source.name),
    }


def _ingest(sources: list[Path], mapping: Path, out: Path) -> dict:
    """One `parcelrisk ingest` process: its wall time and its own peak memory."""
    stdout, _, seconds, peak = _run(
        "ingest", *map(str, sources), "--mapping", str(mapping), "--out", str(out)
    )
    summary = json.loads(stdout)
    read = 0
    for source in sources:
        with open(source, encoding="utf-8") as fh:
            lines = sum(1 for _ in fh)
        # a CSV's header line; an XML file's declaration, root and closing lines; a JSON
        # array's brackets, a keyed document's line more
        skipped = {".csv": 1, ".xml": 3, ".json": 2 + (source.stem == "keyed")}
        read += lines - skipped.get(source.suffix, 0)
    return {
        "seconds": round(seconds, 2),
        "peak_rss_mb": peak,
        "rows_read": read,
        "rows_read_per_s": round(read / seconds),
        "rows_written": summary["rows"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--write-exports", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write_exports is not None:  # the child that writes the files (see below)
        _exports(args.rows, args.write_exports)
        return
    os.environ.setdefault(
        "PARCELRISK_PSEUDONYM_KEY", "benchmark-throwaway-pseudonym-key-" + "0" * 32
    )
    with tempfile.TemporaryDirectory(prefix="parcelrisk-ingest-") as tmp:
        work = Path(tmp)
        # written by a child process: an ingest forked from a process holding the frames
        # would report their memory as its own peak
        subprocess.run(
            [sys.executable, __file__, "--rows", str(args.rows), "--write-exports", str(work)],
            check=True,
        )
        exports = {
            "one_file": [work / "all.csv"],
            "four_files": [work / f"q{q + 1}.csv" for q in range(4)],
            "items": [work / "items.csv"],
        }
        exports["ndjson"] = [work / "all.ndjson"]
        exports["json_array"] = [work / "all.json"]
        exports["json_keyed"] = [work / "keyed.json"]
        exports["xml"] = [work / "all.xml"]
        item_mapping = work / "items_mapping.yaml"
        item_mapping.write_text(MAPPING.read_text() + ITEMS_BLOCK)
        # JSON and XML cells are text already: the same mapping without the CSV's delimiter
        record_mapping = work / "records_mapping.yaml"
        record_mapping.write_text(MAPPING.read_text().replace('delimiter: ";"\n', ""))
        keyed_mapping = work / "keyed_mapping.yaml"
        keyed_mapping.write_text("records: declarations\n" + record_mapping.read_text())
        results = {}
        for name, sources in exports.items():
            mapping = {"items": item_mapping, "xml": record_mapping}
            mapping |= {"ndjson": record_mapping, "json_array": record_mapping}
            mapping["json_keyed"] = keyed_mapping
            results[name] = _ingest(sources, mapping.get(name, MAPPING), work / f"{name}.parquet")
        results["draft_one_file"] = _draft(work / "all.csv")
    print(json.dumps({"benchmark": "ingest", "rows": args.rows, **results}, indent=1))


if __name__ == "__main__":
    main()
