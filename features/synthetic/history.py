"""One synthetic history, assembled: the stages in their order, the two frames and the files.

``generate`` runs the parts of the world in a fixed order on one random stream: catalogue and
world (``world``), the parcels' skeleton, fraud intent and mechanisms (``fraud``), their
signatures, split orders, the truth and the legacy inspections (``inspection``). A newcomer
rarely changes this file; a new column of the declarations is added in ``_frames``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from features.intake.contract import CATEGORIES, OFFENCE_TYPES, coerce_declarations
from features.intake.io import write_declarations
from features.synthetic.catalogue import catalogue_arrays
from features.synthetic.fraud import (
    MECHANISM_MIX,
    add_split_orders,
    choose_mechanisms,
    declare_goods,
    declare_origin,
    draw_intent,
    draw_offences,
    offence_probability,
    redraw_items,
    value_parcels,
)
from features.synthetic.inspection import (
    draw_inspection_delay,
    revenue_at_stake,
    select_for_inspection,
)
from features.synthetic.params import SyntheticParams, parse_start
from features.synthetic.sampling import format_ids
from features.synthetic.world import (
    COUNTRY_CODES,
    OFFICES,
    OPERATOR_CHANNELS,
    OPERATORS,
    PLATFORMS,
    DeclaredFields,
    World,
    build_world,
    draw_declared_fields,
    draw_parcels,
)

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

DECLARATIONS_FILE = "declarations.parquet"
GROUND_TRUTH_FILE = "ground_truth.parquet"
GROUND_TRUTH_COLUMNS = (
    "declaration_id",
    "p_illicit",
    "illicit",
    "revenue_at_stake",
    "revenue_if_illicit",
    "offence_type",
)
# What ``generate`` reports to ``on_stage`` as each stage completes, in order.
GENERATION_STAGES = (
    "world",
    "parcels",
    "intent",
    "signatures",
    "split orders",
    "inspection",
    "frames",
)


def _ignore_stage(stage: str) -> None:
    """No progress reporting."""


def generate(
    params: SyntheticParams, *, on_stage: Callable[[str], None] = _ignore_stage
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Generate (declarations with outcomes, ground truth) in memory, sorted by declared_at.

    Declarations are in canonical contract dtypes. The ground truth has one row per parcel
    (``GROUND_TRUTH_COLUMNS``; offence_type is the true offence, null when not illicit).
    ``on_stage`` is called with each name of ``GENERATION_STAGES`` as that stage completes.

    Every draw comes from one generator seeded with ``params.seed``, in the order below: moving
    a draw, or drawing for fewer parcels, changes every value drawn after it.
    """
    p = params
    rng = np.random.default_rng(p.seed)
    cat = catalogue_arrays()
    world = build_world(p, rng, cat, MECHANISM_MIX)
    on_stage("world")

    parcels = draw_parcels(p, rng, world, cat)
    seller = parcels["seller"]
    on_stage("parcels")

    logit, intent, drift_on = draw_intent(p, rng, world, cat, parcels)
    mechanism = choose_mechanisms(rng, world, seller, intent, drift_on)
    on_stage("intent")

    t_frac = parcels["sec"] / (p.days * 86_400)
    item = redraw_items(rng, cat, parcels, t_frac, mechanism)
    values = value_parcels(rng, cat, item, intent, mechanism)
    description, declared_item, category = declare_goods(
        rng, cat, item, intent, mechanism, values["genuine_brand"], parcels["category"]
    )
    origin = declare_origin(rng, world, seller, intent, mechanism)
    p_illicit = offence_probability(rng, cat, item, intent, mechanism, values, logit)
    on_stage("signatures")

    parcels = add_split_orders(
        p,
        rng,
        {
            "sec": parcels["sec"],
            "seller": seller,
            "platform": parcels["platform"],
            "operator": parcels["operator"],
            "consignee": parcels["consignee"],
            "item": item,
            "declared_item": declared_item,
            "quantity": values["quantity"],
            "weight": values["weight"],
            "true_value": values["true_value"],
            "declared_eur": values["declared_eur"],
            "description": description,
            "origin": origin,
            "category": category,
            "ioss": parcels["ioss"],
            "mechanism": mechanism,
            "p_illicit": p_illicit,
        },
        world,
    )
    on_stage("split orders")

    illicit, would_be, offence = draw_offences(rng, parcels["mechanism"], parcels["p_illicit"])
    revenue_if_illicit, revenue_drawn = revenue_at_stake(p, rng, cat, parcels, would_be)
    revenue = np.where(illicit, revenue_drawn, 0.0)
    declared = draw_declared_fields(rng, world, cat, parcels)
    day = parcels["sec"] // 86_400
    inspected, reason = select_for_inspection(
        p,
        rng,
        day=day,
        chapter=cat.chapter[parcels["declared_item"]],
        description=parcels["description"],
        declared_value_eur=declared.declared_value_eur,
        weight=declared.weight,
        origin=COUNTRY_CODES[parcels["origin"]],
        aeo=declared.aeo,
        ioss=parcels["ioss"],
    )
    delay_s = draw_inspection_delay(rng, parcels["operator"])
    on_stage("inspection")

    declared_at = parse_start(p.start) + parcels["sec"].astype("timedelta64[s]")
    frames = _frames(
        world,
        parcels,
        declared,
        declared_at=declared_at,
        inspected_at=declared_at + delay_s.astype("timedelta64[s]"),
        inspected=inspected,
        reason=reason,
        illicit=illicit,
        offence=offence,
        revenue=revenue,
        revenue_if_illicit=revenue_if_illicit,
    )
    on_stage("frames")
    return frames


def _frames(
    world: World,
    parcels: dict[str, np.ndarray],
    declared: DeclaredFields,
    *,
    declared_at: np.ndarray,
    inspected_at: np.ndarray,
    inspected: np.ndarray,
    reason: np.ndarray,
    illicit: np.ndarray,
    offence: np.ndarray,
    revenue: np.ndarray,
    revenue_if_illicit: np.ndarray,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The declarations (outcomes only where inspected) and the ground truth, as frames."""
    import pandas as pd

    n = len(parcels["sec"])
    seller, operator, consignee = parcels["seller"], parcels["operator"], parcels["consignee"]
    offence_names = np.array(OFFENCE_TYPES, dtype=object)
    offence_text = np.where(offence >= 0, offence_names[np.maximum(offence, 0)], None)
    platform_ids = np.array([*PLATFORMS, None], dtype=object)[parcels["platform"]]

    def text(values: np.ndarray) -> pd.Series:
        return pd.Series(values, dtype="str")

    declarations = pd.DataFrame(
        {
            "declaration_id": text(format_ids("D", np.arange(1, n + 1), 9)),
            "declared_at": pd.Series(declared_at).dt.tz_localize("UTC"),
            "arrival_office": text(np.array(OFFICES, dtype=object)[declared.office]),
            "channel": text(OPERATOR_CHANNELS[operator]),
            "operator_id": text(np.array([o[0] for o in OPERATORS], dtype=object)[operator]),
            "platform_id": text(platform_ids),
            "seller_id": text(world.seller_ids[seller]),
            "seller_country": text(COUNTRY_CODES[world.seller_country[seller]]),
            "consignee_id": text(world.consignee_ids[consignee]),
            "consignee_region": text(world.consignee_region[consignee]),
            "origin_country": text(COUNTRY_CODES[parcels["origin"]]),
            "hs_code": text(declared.hs_code),
            "description": text(parcels["description"]),
            "quantity": parcels["quantity"].astype(np.int64),
            "gross_weight_kg": declared.weight,
            "declared_value": declared.declared_value,
            "currency": text(declared.currency),
            "category": text(np.array(CATEGORIES, dtype=object)[parcels["category"]]),
            "ioss_prepaid": parcels["ioss"].astype(bool),
            "aeo_operator": declared.aeo.astype(bool),
            "inspected": inspected,
            "inspected_at": pd.Series(np.where(inspected, inspected_at, np.datetime64("NaT")))
            .dt.tz_localize("UTC")
            .astype("datetime64[us, UTC]"),
            "illicit": pd.array(np.where(inspected, illicit, False), dtype="boolean"),
            "offence_type": text(np.where(inspected, offence_text, None)),
            "revenue_recovered": np.where(inspected, revenue, np.nan),
            "selection_reason": text(reason),
        }
    )
    declarations.loc[~inspected, "illicit"] = pd.NA
    declarations = coerce_declarations(declarations, with_outcomes=True)
    truth = pd.DataFrame(
        {
            "declaration_id": declarations["declaration_id"],
            "p_illicit": parcels["p_illicit"],
            "illicit": illicit,
            "revenue_at_stake": revenue,
            # what an offence would cost if there is one: p_illicit x this is the revenue oracle
            # (ranking on revenue_at_stake would rank on the label itself)
            "revenue_if_illicit": revenue_if_illicit,
            "offence_type": text(offence_text),
        }
    )
    return declarations, truth


def generate_to_dir(
    *, parcels: int, days: int, seed: int, out: Path, start: str, progress: bool = False
) -> dict:
    """Generate a history and write ``declarations.parquet`` and ``ground_truth.parquet`` to ``out``.

    Both files are written atomically; the summary (see ``summary.summarize``) adds timing and
    paths. ``progress`` draws a bar of the stages on stderr.
    """
    from tqdm import tqdm

    # scikit-learn's import (about 2.5 s cold) is start-up, not generation: keep it off the clock
    from features.synthetic.summary import summarize

    began = time.perf_counter()
    params = SyntheticParams(seed=seed, parcels=parcels, days=days, start=start)
    with tqdm(
        total=len(GENERATION_STAGES) + 2,
        desc="generate",
        unit="stage",
        file=sys.stderr,
        disable=not progress,
    ) as bar:

        def stage_done(stage: str) -> None:
            bar.set_postfix_str(stage, refresh=False)
            bar.update()

        declarations, truth = generate(params, on_stage=stage_done)
        generated = time.perf_counter() - began
        out = Path(out)
        write_declarations(declarations, out / DECLARATIONS_FILE)
        write_ground_truth(truth, out / GROUND_TRUTH_FILE)
        stage_done("files")
        facts = summarize(declarations, truth)
        stage_done("summary")
    summary = {
        "parcels": len(declarations),
        "days": days,
        "seed": seed,
        "seconds": None,
        **{k: v for k, v in facts.items() if k not in ("parcels", "days")},
        "declarations": str(out / DECLARATIONS_FILE),
        "ground_truth": str(out / GROUND_TRUTH_FILE),
    }
    summary["seconds"] = round(time.perf_counter() - began, 2)
    summary["seconds_generate"] = round(generated, 2)
    logger.info("generated %d parcels in %.1f s", len(declarations), summary["seconds"])
    return summary


def write_ground_truth(truth: pd.DataFrame, path: Path) -> None:
    """Write the ground truth Parquet atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from features.intake.io import atomic_write

    table = pa.Table.from_pandas(truth[list(GROUND_TRUTH_COLUMNS)], preserve_index=False)
    atomic_write(Path(path), lambda tmp: pq.write_table(table, tmp))
