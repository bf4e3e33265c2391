"""`parcelrisk audit list|show|recompute|export`: the auditor's review of recorded decisions.

Thin edges: each command opens the store (``serving.audit.cli.open_audit_store``), calls the
core (``serving.audit.report``, ``serving.audit.models``, ``serving.audit.recompute``) and
prints. Nothing here writes to the store.
"""

from __future__ import annotations

import itertools
import json
import random
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from features.cli import params_option, settings_from, tracking_option
from features.errors import ParcelriskError
from models.lane_versions import ThresholdsAltered
from serving.audit.cli import db_option, open_audit_store
from serving.audit.safe_text import display_uri, scrub_uris, terminal_safe

_FORMATS = ("table", "json", "csv")
_LIST_COLUMNS = [
    "seq",
    "answered_at",
    "decision_id",
    "declaration_id",
    "lane",
    "risk",
    "expected_revenue",
    "model_version",
    "exploration",
]


def strict_json(body: Any) -> str:
    """``body`` as RFC 8259 JSON: a missing number (NaN, pandas' NA, NaT) is null, never the
    bare ``NaN`` token Python writes, which strict parsers (and courts' tools) refuse (probe 12:
    a clean correction's offence and revenue came out as NaN)."""
    from serving.errors import json_finite

    return json.dumps(json_finite(body), indent=2, default=str, allow_nan=False)


def _period(date_from: str | None, date_to: str | None) -> tuple[str | None, str | None]:
    from serving.audit.report import parse_when

    start = parse_when(date_from, "--from") if date_from is not None else None
    end = parse_when(date_to, "--to", end_of_day=True) if date_to is not None else None
    if start is not None and end is not None and end <= start:
        raise ParcelriskError(f"--to {date_to} is not after --from {date_from}")
    return start, end


_PAGE = 5_000  # decisions read at a time: an export holds one page of records, never a period


def _pages(store: Any, limit: int | None, **filters: Any) -> Iterator[list[Any]]:
    """The decisions ``find`` matches (up to ``limit``), page by page in seq order: the
    archived days the filters touch first (``serving.audit.archived``), then the hot store."""
    from serving.audit.archived import find_with_archive

    after, seen = 0, 0
    while limit is None or seen < limit:
        page = _PAGE if limit is None else min(_PAGE, limit - seen)
        found = find_with_archive(store, after_seq=after, limit=page, **filters)
        if found:
            yield found
        seen += len(found)
        if len(found) < page:
            return
        after = found[-1].seq


def _find_all(store: Any, limit: int | None, **filters: Any) -> list[Any]:
    """Every decision ``find`` matches (up to ``limit``), in seq order (``_pages``)."""
    return [record for page in _pages(store, limit, **filters) for record in page]


def _not_found(store: Any, decision_id: str) -> str:
    """Why a decision is not found: never recorded, or perhaps expired under retention (the
    expiry record names ranges, not each decision)."""
    from serving.audit.expiry import expiry_notice

    expired = expiry_notice(store)
    if expired is None:
        return f"decision {decision_id!r}: not in {store.location}"
    return (
        f"decision {decision_id!r}: not in {store.location}; if it was among the expired, it "
        f"was deleted: {expired}"
    )


def _say_expired_before(store: Any, answered_from: str | None) -> None:
    """A period reaching back into days expired under retention says so (its list is short
    of them, not empty by chance)."""
    from serving.audit.expiry import expiry_notice

    expired = expiry_notice(store, answered_from)
    if expired is not None:
        typer.echo(f"note: not in this period's decisions: {expired}", err=True)


def _consignee_pseudonym(value: str) -> str:
    """The pseudonym ``--consignee`` names: a pseudonym as given, a raw id keyed with the
    pseudonym key (as ``parcelrisk keys pseudonym`` does)."""
    from features.intake.pseudonym import pseudonym_of
    from features.keys import load_key

    if not value.strip():
        raise ParcelriskError("--consignee: give the person's id (or its pseudonym)")
    return pseudonym_of(value.strip(), load_key("pseudonym"))


def _say_other_keys(keyed_with: Counter[str], read_with_key: str) -> None:
    """A lookup by raw id finds only the decisions keyed as it keys the id: those the period
    holds under another pseudonym key (a rotated one, another site's) name the person by
    another pseudonym. Said with their key ids and counts, so an empty or short answer is not
    read as "nothing about them" (probe 30: after a rotation, 4 of a person's 12 decisions
    were listed, exit 0, under the same note every lookup printed)."""
    others = {k: n for k, n in keyed_with.items() if k and k != read_with_key}
    unrecorded = keyed_with.get("", 0)
    total = sum(keyed_with.values())
    if others:
        listed = ", ".join(f"key id {k}: {n}" for k, n in sorted(others.items()))
        typer.echo(
            f"note: {sum(others.values())} of the period's {total} decisions were keyed with "
            f"another pseudonym key ({listed}): this person is named by another pseudonym "
            "there and is not searched for in them; look them up with that key "
            "(PARCELRISK_PSEUDONYM_KEY_FILE), or by the pseudonym it gives",
            err=True,
        )
    if unrecorded:
        typer.echo(
            f"note: {unrecorded} of the period's {total} decisions were recorded before "
            "decisions named their pseudonym key: if a key was rotated since, they are keyed "
            "with an earlier one and this person is named by another pseudonym there",
            err=True,
        )


def list_decisions(
    date_from: str = typer.Option(..., "--from", help="From this date or ISO time (UTC)."),
    date_to: str = typer.Option(
        ..., "--to", help="To this ISO time, or to the end of this date (UTC), exclusive."
    ),
    lane: str | None = typer.Option(None, "--lane", help="Only this lane: red, yellow, green."),
    model_version: str | None = typer.Option(None, "--model-version", help="Only this version."),
    declaration_id: str | None = typer.Option(None, "--declaration-id", help="Only this one."),
    consignee: str | None = typer.Option(
        None,
        "--consignee",
        help="Only this person's: their raw id (keyed with the pseudonym key) or pseudonym.",
    ),
    seller: str | None = typer.Option(
        None, "--seller", help="Only this seller's (its id as the declarations give it)."
    ),
    limit: int = typer.Option(100, "--limit", min=1, help="At most this many (seq order)."),
    fmt: str = typer.Option("table", "--format", help="table, json or csv."),
    db: str | None = db_option(),
    params: Path | None = params_option("section serve"),
) -> None:
    """Decisions answered in a period, in the chain's order, filtered by lane, model version,
    declaration, consignee or seller."""
    from serving.audit.report import decision_rows, read_outcomes, rows_csv, terminal_table

    if fmt not in _FORMATS:
        raise ParcelriskError(f"--format {fmt!r}: use one of {', '.join(_FORMATS)}")
    if lane is not None and lane not in ("red", "yellow", "green"):
        raise ParcelriskError(f"--lane {lane!r}: use red, yellow or green")
    start, end = _period(date_from, date_to)
    person = _consignee_pseudonym(consignee) if consignee is not None else None
    if seller is not None and not seller.strip():
        raise ParcelriskError("--seller: give the seller's id")
    read_with_key = None  # the key id a raw consignee id was keyed with here
    if person is not None and person != consignee.strip():  # type: ignore[union-attr]
        from features.keys import key_id, key_source, load_key

        # say which key read the id (probe 12: a wrong key file answered "no decisions in
        # that period", exit 0)
        read_with_key = key_id(load_key("pseudonym"))
        typer.echo(
            f"consignee read as pseudonym {person} (pseudonym key id {read_with_key} from "
            f"{key_source('pseudonym')})",
            err=True,
        )
    keyed_with: Counter[str] = Counter()  # the period's decisions by their pseudonym key id
    store = open_audit_store(db, params)
    try:
        filters = {
            "answered_from": start,
            "answered_to": end,
            "lane": lane,
            "model_version": model_version,
            "declaration_id": declaration_id,
        }
        wanted = {
            field: value
            for field, value in (
                ("consignee_id", person),
                ("seller_id", seller.strip() if seller is not None else None),
            )
            if value is not None
        }
        if not wanted:
            records = _find_all(store, limit, **filters)
        else:
            # "every decision about person X" (or seller S): the stored declarations hold
            # them (the consignee as a pseudonym), so the period is read and matched on them
            records = []
            for page in _pages(store, None, **filters):
                keyed_with.update(r.pseudonym_key_id for r in page)
                records += [
                    r for r in page if all(r.declaration.get(k) == v for k, v in wanted.items())
                ]
            records = records[:limit]
        outcomes = read_outcomes(store, [r.declaration_id for r in records])
        _say_expired_before(store, start)
    finally:
        store.close()
    if read_with_key is not None:
        _say_other_keys(keyed_with, read_with_key)
    rows = decision_rows(records, outcomes)
    if fmt == "json":
        typer.echo(rows.to_json(orient="records", indent=1))
    elif fmt == "csv":
        typer.echo(rows_csv(rows), nl=False)
    elif rows.empty:
        typer.echo("no decisions in that period", err=True)
    else:
        typer.echo(terminal_table(rows[[*_LIST_COLUMNS, "outcome"]]))
    if len(records) == limit:
        typer.echo(f"(first {limit}: raise --limit for more)", err=True)


def show(
    decision_id: str = typer.Argument(..., help="The decision's id."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    tracking_uri: str | None = tracking_option(),
    db: str | None = db_option(),
    params: Path | None = params_option("section serve"),
) -> None:
    """One decision in full: the declaration, lane, scores, reasons, every feature with its
    contribution (its own model version), the model run, who asked, its place in the chain,
    delivery and the inspection result."""
    from serving.audit.models import RecordedModels, explain_record, run_url
    from serving.audit.report import read_outcomes, read_result_history
    from serving.errors import json_finite

    store = open_audit_store(db, params)
    try:
        found = store.get(decision_id)
        if found is None:
            raise ParcelriskError(_not_found(store, decision_id))
        record, intact = found
        delivery = store.delivery(decision_id)
        outcome = read_outcomes(store, [record.declaration_id])
        result_history = read_result_history(store, record.declaration_id)
    finally:
        store.close()
    with RecordedModels(tracking_uri) as models:
        explanation: dict[str, Any] | None = None
        cutoffs: dict[str, float] | None = None
        cutoffs_problem = None
        problem = None
        run: dict[str, Any] = {"run_id": None, "run_url": None}
        try:
            loaded = models.get(
                record.model_name,
                record.model_version,
                record.model_run_id,
                record.model_bundle_sha256,
            )
            run = {"run_id": loaded.run_id, "run_url": loaded.run_url}
            explanation = explain_record(record, loaded)
            # the cut-offs the lane was assigned with, not only their version (probe 12)
            try:
                found = models.thresholds(loaded, record.thresholds_version)
            except ThresholdsAltered as exc:
                found, cutoffs_problem = None, str(exc)
            if found is not None:
                cutoffs = {
                    "red_cutoff": found.red_cutoff,
                    "yellow_cutoff": found.yellow_cutoff,
                    "red_rate": found.red_rate,
                    "yellow_rate": found.yellow_rate,
                }
        except ParcelriskError as exc:
            problem = scrub_uris(str(exc))  # a loading error may quote the registry's URI
            # the run the registry names, though its artifacts do not load (probe 12: "run None")
            run["run_id"] = models.run_of(record.model_name, record.model_version)
        # The run the decision recorded (under its MAC) is the model that decided; the
        # registry's run for its name and version is only what that name means today (probe 12:
        # a rebuilt registry named another run for "v1"). Old records name none: the registry's.
        # (the recorded run is loaded when the registry lost the version or renamed it)
        run["registry_run_id"] = models.run_of(record.model_name, record.model_version)
        if record.model_run_id:
            if record.model_run_id != run["run_id"]:
                run["run_url"] = run_url(models.tracking_uri, None, record.model_run_id)
            run["run_id"] = record.model_run_id
        run["run_recorded"] = bool(record.model_run_id)
        run["bundle_sha256"] = record.model_bundle_sha256 or None
        tracking = display_uri(models.tracking_uri)  # printed: never its password
    # None, not NaN, for what a result leaves empty (a clean one's offence and revenue)
    result = json_finite(outcome.drop(columns="declaration_id").to_dict("records"))
    result_history = json_finite(result_history)
    body = {
        "decision_id": record.decision_id,
        "declaration_id": record.declaration_id,
        "declaration": record.declaration,
        "lane": record.lane,
        "exploration": record.exploration,
        "risk": record.risk,
        "expected_revenue": record.expected_revenue,
        "raw_score": record.raw_score,
        "reasons": record.reasons,
        "warnings": record.warnings,
        "warning_codes": record.codes_of_warnings,
        "model": {
            "name": record.model_name,
            "version": record.model_version,
            **run,
            "tracking_uri": tracking,
            "thresholds_version": record.thresholds_version,
            "cutoffs": cutoffs,
            "cutoffs_unavailable": cutoffs_problem,
            "lane_policy": json.loads(record.lane_policy),
        },
        "explanation": explanation,
        "explanation_unavailable": problem,
        "request_id": record.request_id,
        "api_key_id": record.api_key_id,
        "scored_at": record.scored_at,
        "answered_at": record.answered_at,
        "seq": record.seq,
        "known_seq": record.known_seq,
        "known_results_seq": record.known_results_seq,
        "intact": intact,
        "delivery": delivery,
        "inspection": result[0] if result else None,
        # every result stored, first to current: a correction never hides what it replaced
        "result_history": result_history,
    }
    typer.echo(strict_json(body) if as_json else _show_text(body))


def _amount(value: float | None) -> str:
    return "-" if value is None else f"EUR {value:,.2f}"


def _show_text(body: dict[str, Any]) -> str:
    """``show``'s text: one line per field, every line ``terminal_safe`` (the declaration's
    text is the declarant's: it must not clear the screen or forge a line of its own)."""
    model = body["model"]
    delivery = body["delivery"]
    lines = [
        f"decision      {body['decision_id']}   seq {body['seq']}",
        f"declaration   {body['declaration_id']}",
        f"lane          {body['lane']}" + ("  (exploration quota)" if body["exploration"] else ""),
        f"risk          {body['risk']:.6f}   expected revenue {body['expected_revenue']:.2f}",
        f"model         {model['name']} v{model['version']}   run {model['run_id']}"
        + (
            f" (recorded with the decision; bundle.json SHA-256 {model['bundle_sha256'] or '-'})"
            if model["run_recorded"]
            else " (the registry's today: the decision predates recording its run)"
        ),
        f"run           {model['run_url'] or '-'}   (tracking {model['tracking_uri']})",
    ]
    if model["run_recorded"] and model["registry_run_id"] != model["run_id"]:
        lines.append(
            f"registry      NOT the model that decided: its {model['name']} v{model['version']} "
            f"is run {model['registry_run_id'] or '(none)'} today"
        )
    lines += [
        f"cut-offs      {model['thresholds_version']}: "
        + (
            f"red if priority >= {c['red_cutoff']:.6g} ({c['red_rate']:.1%} of traffic), "
            f"yellow if >= {c['yellow_cutoff']:.6g} ({c['yellow_rate']:.1%})"
            if (c := model["cutoffs"]) is not None
            else f"NOT AVAILABLE: {model['cutoffs_unavailable']}"
            if model["cutoffs_unavailable"]
            else "not available (the model does not load)"
        ),
        f"asked by      request {body['request_id'] or '-'}   api key {body['api_key_id'] or '-'}",
        f"scored_at     {body['scored_at']}   answered_at {body['answered_at']}",
        f"knew          log seq {body['known_seq']}, results seq {body['known_results_seq']}",
        "chain         "
        + ("intact" if body["intact"] else "NOT INTACT (run `parcelrisk audit verify`)"),
        "delivery      "
        + (
            "answered"
            if delivery is None
            else f"NOT delivered: {delivery['reason']} at {delivery['marked_at']}"
            + (f", redelivered {delivery['redelivered_at']}" if delivery["redelivered_at"] else "")
        )
        # the mark sits beside the decision, never in its MAC'd content (it is written after
        # the answer failed): say so, so an auditor does not read it as chain-protected
        + "   (operational mark: outside the chain's integrity check)",
    ]
    inspection = body["inspection"]
    if inspection is None:
        lines.append("inspection    no result stored")
    else:
        verdict = "illicit" if inspection["illicit"] else "clean"
        lines.append(
            f"inspection    {verdict} at {inspection['inspected_at']}, offence "
            f"{inspection['offence_type'] or '-'}, recovered "
            f"{_amount(inspection['revenue_recovered'])}"
        )
        for before, now in itertools.pairwise(body["result_history"]):
            was = "illicit" if before["illicit"] else "clean"
            lines.append(
                f"corrected     {now['recorded_at']} by {now['source']}: {now['correction']} "
                f"(was {was} at {before['inspected_at']}, offence "
                f"{before['offence_type'] or '-'}, recovered {_amount(before['revenue_recovered'])})"
            )
    lines.append("reasons")
    lines += [f"  {r['contribution']:+.4f}  {r['text']}" for r in body["reasons"]] or ["  none"]
    if body["warnings"]:
        lines.append("warnings")
        lines += [
            f"  [{code}] {w}"
            for code, w in zip(body["warning_codes"], body["warnings"], strict=True)
        ]
    lines.append("declaration")
    lines += [f"  {k}: {v}" for k, v in body["declaration"].items()]
    explanation = body["explanation"]
    if explanation is None:
        lines.append(f"features      unavailable: {body['explanation_unavailable']}")
    else:
        lines.append(
            f"features      base value {explanation['base_value']:+.4f}, raw score "
            f"{explanation['raw_score']:+.6f} (stored {body['raw_score']:+.6f})"
        )
        width = max(len(c["feature"]) for c in explanation["contributions"])
        lines += [
            f"  {c['feature']:<{width}}  {c['contribution']:+.5f}  {c['value']}"
            + (f" {c['unit']}" if c.get("unit") and c["value"] is not None else "")
            for c in explanation["contributions"]
        ]
    return "\n".join(terminal_safe(line) for line in lines)


def recompute(
    decision_id: str | None = typer.Argument(None, help="One decision's id (or --sample)."),
    sample: int | None = typer.Option(None, "--sample", min=1, help="N decisions at random."),
    seed: int = typer.Option(0, "--seed", help="Seed of the --sample draw."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    tracking_uri: str | None = tracking_option(),
    db: str | None = db_option(),
    params: Path | None = params_option("sections serve"),
) -> None:
    """Recompute decisions with their own model version, from the stored feature vector and
    from the stored declaration on the entity state as it was; exit 1 on any mismatch or
    decision that could not be verified."""
    from serving.audit.models import RecordedModels
    from serving.audit.recompute import (
        all_seqs,
        has_results,
        recompute_decisions,
        records_at,
        summarise,
    )
    from serving.store import open_outcome_store

    if (decision_id is None) == (sample is None):
        raise ParcelriskError("give one DECISION_ID or --sample N")
    settings = settings_from(params)
    store = open_audit_store(db, params)
    results = None
    try:
        if decision_id is not None:
            found = store.get(decision_id)
            if found is None:
                raise ParcelriskError(_not_found(store, decision_id))
            records = [found[0]]
        else:
            seqs = all_seqs(store)
            chosen = sorted(random.Random(seed).sample(seqs, min(int(sample or 0), len(seqs))))
            records = records_at(store, chosen)
        # the outcome store creates its table when absent: open it only when there is one
        results = (
            open_outcome_store(store.source, store, read_only=True)
            if has_results(store.source)
            else None
        )
        with RecordedModels(tracking_uri) as models:
            found_all = recompute_decisions(
                records, store, results, models, settings.serve.exploration_seed
            )
    finally:
        if results is not None:
            results.close()
        store.close()
    summary = summarise(found_all)
    if as_json:
        body = {"decisions": [r.as_dict() for r in found_all], "summary": summary}
        typer.echo(strict_json(body))
    else:
        for r in found_all:
            typer.echo(terminal_safe(_recomputed_line(r)))
        typer.echo(
            f"{summary['n']} decisions: {summary['matches']} match, {summary['mismatches']} "
            f"mismatch, {summary['unverifiable']} unverifiable"
        )
    if summary["mismatches"] or summary["unverifiable"]:
        raise typer.Exit(1)


def _recomputed_line(r: Any) -> str:
    head = f"seq {r.seq} {r.decision_id} {r.model}: {r.status}"
    if r.unverifiable is not None:
        return head
    parts = []
    for label, check in (("vector", r.from_vector), ("declaration", r.from_declaration)):
        lane = "lane ok" if check.lane_match else f"lane {check.lane} != stored {r.stored_lane}"
        parts.append(f"{label}: raw diff {check.raw_diff:+.3g}, {lane}")
    line = f"{head} ({'; '.join(parts)})"
    if r.differing_features:
        shown = ", ".join(r.differing_features[:5])
        more = len(r.differing_features) - 5
        line += f" features differ: {shown}" + (f" (+{more})" if more > 0 else "")
    return line + "".join(f" [{n}]" for n in r.notes)


def export(
    date_from: str = typer.Option(..., "--from", help="From this date or ISO time (UTC)."),
    date_to: str = typer.Option(
        ..., "--to", help="To this ISO time, or to the end of this date (UTC), exclusive."
    ),
    fmt: str = typer.Option("html", "--format", help="csv or html."),
    out: Path | None = typer.Option(None, "--out", help="Write here (default: stdout)."),
    db: str | None = db_option(),
    params: Path | None = params_option("section serve"),
) -> None:
    """A report to file for a period: counts by lane and model version, hit rates where
    inspection results exist, every decision with its outcome; HTML states the chain head and
    whether the chain verified."""
    import tempfile

    import pandas as pd

    from serving.audit.chain import format_head
    from serving.audit.report import (
        decision_rows,
        read_outcomes,
        report_html_parts,
        rows_csv,
        summary_of_tally,
        table_rows,
        tally,
    )
    from serving.audit.verify import (
        describe_results,
        describe_results_problem,
        verify_results_of,
        verify_store,
    )

    if fmt not in ("csv", "html"):
        raise ParcelriskError(f"--format {fmt!r}: use csv or html")
    if out is not None:
        _check_export_out(out, fmt, db if db is not None else settings_from(params).serve.audit_db)
    start, end = _period(date_from, date_to)
    # Page by page: the rows of one page are written (CSV) or kept as HTML in a temporary file
    # (the summary comes first in the page and is known only at the end), and only their
    # tally is kept, so a period of millions of decisions is exported in one page's memory
    # (100k decisions: 620 MB peak when records and rows were held whole).
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8") as body:
        tallies: list[pd.DataFrame] = []
        n_rows, unvouched, columns = 0, 0, None
        store = open_audit_store(db, params)
        try:
            # walked first, CSV and HTML alike: each row says whether the chain vouches for it,
            # and one it does not is kept out of the totals (probe 12: a decision edited
            # yellow -> green was exported unmarked, counted as green, exit 0)
            verified = verify_store(store)
            results_verified = verify_results_of(store, decisions=verified)
            for page in _pages(store, None, answered_from=start, answered_to=end):
                outcomes = read_outcomes(store, [r.declaration_id for r in page])
                rows = decision_rows(page, outcomes)
                # last: a column added after the ones readers of earlier exports know
                rows["chain"] = chain_states(rows["seq"].tolist(), verified)
                first = columns is None
                body.write(rows_csv(rows, header=first) if fmt == "csv" else table_rows(rows))
                # one recorded after the walk is counted (not suspect, just newer than it)
                vouched = ~rows["chain"].str.startswith(("NOT INTACT", _AFTER_BREAK))
                tallies.append(tally(rows[vouched]))
                n_rows, columns = n_rows + len(rows), list(rows.columns)
                unvouched += int((~vouched).sum())
            if columns is None:  # an empty period: its CSV still has the header
                empty = decision_rows([], read_outcomes(store, []))
                empty["chain"] = pd.Series(dtype=object)
                columns = list(empty.columns)
                if fmt == "csv":
                    body.write(rows_csv(empty))
            head = store.head()
            path = store.location
            from serving.audit.expiry import expiry_notice

            expired = expiry_notice(store, start)
        finally:
            store.close()

        def pieces() -> Iterator[str]:
            body.seek(0)
            written = iter(lambda: body.read(1 << 20), "")
            if fmt == "csv":
                yield from written
                return
            assert verified is not None and columns is not None
            header = {
                "store": str(path),
                "period": f"{start} to {end} (UTC, end exclusive)",
                "decisions": n_rows,
                "chain head": format_head(*head) if head is not None else "empty",
                "verify": (
                    f"passed ({verified.checked} decisions)"
                    if verified.problem is None
                    else f"FAILED: {verified.problem.describe()}"
                ),
                "verify results": describe_results(results_verified),
            }
            if expired is not None:  # the period reaches into days deleted under retention
                header["expired"] = expired
            if unvouched:
                header["not counted"] = (
                    f"{unvouched} decision(s) the chain does not vouch for (column chain): "
                    "listed, left out of the counts"
                )
            summary = summary_of_tally(pd.concat(tallies) if tallies else tally(pd.DataFrame()))
            yield from report_html_parts(header, summary, n_rows, columns, written)

        if out is None:
            for piece in pieces():
                sys.stdout.write(piece)
            sys.stdout.flush()
        else:
            from features.intake.io import atomic_write

            def write(tmp: Path) -> None:
                with open(tmp, "w", encoding="utf-8") as fh:
                    fh.writelines(pieces())

            atomic_write(out, write)
            typer.echo(f"{n_rows} decisions -> {out}", err=True)
        if expired is not None:
            typer.echo(f"note: not in this period's decisions: {expired}", err=True)
    broken = [
        f"NOT INTACT: {verified.problem.describe()}" if verified.problem is not None else "",
        f"NOT INTACT: {describe_results_problem(results_verified['problem'])}"
        if results_verified is not None and results_verified["problem"] is not None
        else "",
    ]
    if any(broken):  # the report is written, its rows marked; filing it is for a person to judge
        for line in filter(None, broken):
            typer.echo(line, err=True)
        typer.echo(
            f"the export holds {unvouched} decision(s) the chain does not vouch for, marked in "
            "its chain column; run `parcelrisk audit verify`",
            err=True,
        )
        raise typer.Exit(1)


# what an export of each format is written to: the suffix says what the file holds
_EXPORT_SUFFIXES = {"csv": (".csv",), "html": (".html", ".htm")}


def _check_export_out(out: Path, fmt: str, store: str) -> None:
    """Refuse an ``--out`` an export must not write over, before any work: a file not named
    as an export of its format, or the decision store itself (a SQLite file with its journal
    files). A mistyped ``--out audit.db`` replaced the legal record with a CSV, exit 0, and
    ``--out mlflow.db`` the registry with HTML (probe 20). An earlier export of the same
    format is overwritten: re-exporting a period from a scheduler is the point."""
    from serving.outcome_store import sqlite_path
    from serving.store import is_sqlite

    if out.suffix.lower() not in _EXPORT_SUFFIXES[fmt]:
        raise ParcelriskError(
            f"--out {out}: an export in {fmt} is written to a "
            f"{' or '.join(_EXPORT_SUFFIXES[fmt])} file, so no other file (the decision store, "
            "a registry) is written over by a typo; nothing written"
        )
    if is_sqlite(store):
        db = sqlite_path(store).resolve()
        taken = {db, *(db.with_name(db.name + end) for end in ("-wal", "-shm", "-journal"))}
        if out.resolve() in taken:
            raise ParcelriskError(
                f"--out {out} is the decision store being exported; nothing written"
            )
    if out.is_dir():
        raise ParcelriskError(f"--out {out} is a directory: name the file to write")


def chain_states(seqs: list[int], report: Any) -> list[str]:
    """Per decision of an export, what the chain's walk (``verify_store``) says of it:
    ``intact``; ``NOT INTACT: <kind>`` at the first break; ``not verified: ...`` after it (the
    chain cannot vouch for what follows a break) or for a decision recorded after the walk."""
    problem = report.problem
    last = report.last_seq or 0
    out = []
    for seq in seqs:
        if problem is None:
            out.append("intact" if seq <= last else "not verified: recorded after the walk")
        elif seq < problem.seq:
            out.append("intact")
        elif seq == problem.seq:
            out.append(f"NOT INTACT: {problem.kind}")
        else:
            out.append(f"{_AFTER_BREAK} {problem.seq}")
    return out


_AFTER_BREAK = "not verified: the chain breaks at seq"


def register_review(app: typer.Typer) -> None:
    """Add list, show, recompute and export to the ``audit`` group."""
    app.command("list")(list_decisions)
    app.command("show")(show)
    app.command("recompute")(recompute)
    app.command("export")(export)
