"""Many FOCUS rows, fast, for the ingest benchmark: vectorised, no per-row Python.

Rows are drawn from templates of the same catalogue the history uses (GPU and CPU instances, storage,
egress, managed-LLM tokens, Glue, CloudWatch, credits), tagged with phase/team/model JSON or untagged,
spread over ``days`` daily charge periods. Costs are exact ``decimal128(38, 10)`` values built from
integers (quantity x unit price), so a table's totals are exact and reproducible.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.synth.focus import (
    BILLING_ACCOUNT_ID,
    BILLING_ACCOUNT_NAME,
    CATALOG,
    CD,
    CURRENCY,
    PD,
    PRICE,
    PROVIDER,
    QD,
    REGION_ID,
    C,
    Q,
)

# (sku key, price key, phase, team, model, weight, tagged?, charge category, pricing category)
_TEMPLATES: tuple[tuple[str, str, str, str, str, float, bool, str, str], ...] = (
    ("g5", "g5_od", "inference", "search", "search-ranker", 18, True, "Usage", "Standard"),
    ("g5", "g5_od", "inference", "reco", "reco-twotower", 15, True, "Usage", "Standard"),
    ("g5", "g5_ri", "inference", "search", "search-ranker", 14, True, "Usage", "Committed"),
    ("g5", "g5_ri", "inference", "reco", "reco-twotower", 11, True, "Usage", "Committed"),
    ("p5", "p5_od_after", "pretraining", "ml-platform", "ranker-v9", 9, True, "Usage", "Standard"),
    ("p5", "p5_od_before", "pretraining", "ml-platform", "embed-v8", 4, True, "Usage", "Standard"),
    (
        "p5",
        "p5_od_after",
        "optimization",
        "ml-platform",
        "opt-ranker-v9",
        2,
        True,
        "Usage",
        "Standard",
    ),
    ("g5", "g5_od", "fine_tuning", "search", "search-ranker", 2, True, "Usage", "Standard"),
    ("p5", "p5_od_after", "fine_tuning", "ml-training", "reco-lm", 1, True, "Usage", "Standard"),
    ("c6i", "c6i", "data_preprocessing", "data-eng", "shared", 12, True, "Usage", "Standard"),
    ("s3", "s3", "data_preprocessing", "data-eng", "shared", 1, True, "Usage", "Standard"),
    ("m6i2", "m6i2", "operations", "sre", "shared", 4, True, "Usage", "Standard"),
    ("egress", "egress", "inference", "search", "search-ranker", 2, True, "Usage", "Standard"),
    ("nova_in", "nova_in", "inference", "search", "", 1.5, False, "Usage", "Standard"),
    ("nova_out", "nova_out", "inference", "search", "", 1.5, False, "Usage", "Standard"),
    ("glue", "glue", "data_preprocessing", "data-eng", "", 1, False, "Usage", "Standard"),
    ("s3", "s3", "data_preprocessing", "data-eng", "", 1, False, "Usage", "Standard"),
    ("cwlogs", "cwlogs", "operations", "sre", "", 1, False, "Usage", "Standard"),
    ("m6i1", "m6i1", "unallocated", "", "", 3, False, "Usage", "Standard"),
    ("nova_in", "nova_in", "inference", "search", "", 0.1, False, "Credit", ""),
)
# Typical pricing quantity per row (in 1/Q units): instance-hours, GB-months, GB, tokens.
_QTY = {
    "g5": 24 * Q,
    "p5": 24 * Q,
    "c6i": 20 * Q,
    "m6i2": 24 * Q,
    "m6i1": 10 * Q,
    "s3": 30_000 * Q,
    "egress": 1_000 * Q,
    "nova_in": 500_000_000,
    "nova_out": 90_000_000,
    "glue": 240 * Q,
    "cwlogs": 250 * Q,
}
_RI_P = PRICE["g5_ri"]


def _decimal(units: np.ndarray, scale: int) -> pa.Array:
    """An exact decimal128(38, scale) array from int64 values in units of 10**-scale (zero-copy layout:
    16-byte little-endian two's complement = the int64 and its sign extension)."""
    words = np.empty((len(units), 2), dtype=np.int64)
    words[:, 0] = units
    words[:, 1] = np.where(units < 0, -1, 0)
    return pa.Array.from_buffers(
        pa.decimal128(38, scale), len(units), [None, pa.py_buffer(words.tobytes())]
    )


def _strings(values: Sequence[str | None], idx: np.ndarray) -> pa.Array:
    """Dictionary-encoded strings (values[idx]): compact, fast, and written natively by Parquet."""
    isnull = np.array([v is None for v in values])
    indices = pa.array(idx.astype(np.int32), mask=isnull[idx] if isnull.any() else None)
    return pa.DictionaryArray.from_arrays(
        indices, pa.array([v or "" for v in values], type=pa.string())
    )


def _const(value: str, n: int) -> pa.Array:
    return _strings([value], np.zeros(n, dtype=np.int32))


def synth_focus_rows(
    n_rows: int, seed: int = 0, *, start: str = "2023-11-01", days: int = 1096
) -> pa.Table:
    """``n_rows`` realistic FOCUS 1.2 rows over ``days`` days from ``start`` (a few seconds per 10 million).

    Costs are ``decimal128(38, 10)``, unit prices ``decimal128(38, 4)``, quantities ``decimal128(38, 6)``,
    period columns ``timestamp[s, UTC]``, everything else dictionary-encoded strings (``Tags`` a JSON
    object or null); cast with ``pyarrow.compute.cast(col, pa.string())`` where plain strings are needed.
    """
    rng = np.random.default_rng(seed)
    n = int(n_rows)
    w = np.array([t[5] for t in _TEMPLATES], dtype=float)
    tpl = rng.choice(len(_TEMPLATES), size=n, p=w / w.sum()).astype(np.int32)
    day = rng.integers(0, days, size=n, dtype=np.int64)
    t0 = np.datetime64(start, "D")
    charge_start = (t0 + day).astype("datetime64[s]")
    month = charge_start.astype("datetime64[M]")
    bp_start = month.astype("datetime64[s]")
    bp_end = (month + 1).astype("datetime64[s]")

    base_qty = np.array([_QTY[t[0]] for t in _TEMPLATES], dtype=np.int64)
    # Quantities vary around the template's typical value; rounded to 1/100 of the unit.
    qty = (base_qty[tpl] * rng.uniform(0.2, 1.0, size=n) / (Q // 100)).astype(np.int64) * (Q // 100)
    qty = np.maximum(qty, Q // 100)
    list_p = np.array(
        [PRICE["g5_od"] if t[1] == "g5_ri" else PRICE[t[1]] for t in _TEMPLATES], dtype=np.int64
    )[tpl]
    eff_p = np.array([PRICE[t[1]] for t in _TEMPLATES], dtype=np.int64)[tpl]
    committed = np.array([t[8] == "Committed" for t in _TEMPLATES])[tpl]
    credit = np.array([t[7] == "Credit" for t in _TEMPLATES])[tpl]
    list_cost = qty * list_p
    eff = qty * eff_p
    billed = np.where(committed, 0, eff)
    credit_amt = -(rng.integers(100, 5000, size=n, dtype=np.int64) * C)
    for arr in (list_cost, eff, billed):
        arr[credit] = credit_amt[credit]
    contracted = list_cost.copy()

    def col(key: str) -> list[str | None]:
        return [getattr(CATALOG[t[0]], key) for t in _TEMPLATES]

    tags = [
        json.dumps({"phase": t[2], "team": t[3], "model": t[4], "env": "prod"}, sort_keys=True)
        if t[6]
        else (json.dumps({"owner": "dev1", "env": "dev"}) if t[2] == "unallocated" else None)
        for t in _TEMPLATES
    ]
    charge_cat = [t[7] for t in _TEMPLATES]
    pricing_cat = [t[8] or None for t in _TEMPLATES]
    qty_arr = _decimal(qty, QD)
    null_mask = pa.array(credit)
    qty_or_null = pc.if_else(null_mask, pa.scalar(None, pa.decimal128(38, QD)), qty_arr)
    res_ids = rng.integers(0, 5000, size=n)
    res_ids[credit] = 5000  # credits are not tied to a resource
    resource = _strings([f"i-0{k:016x}" for k in range(5000)] + [None], res_ids)
    table = pa.table(
        {
            "BilledCost": _decimal(billed, CD),
            "EffectiveCost": _decimal(eff, CD),
            "ListCost": _decimal(list_cost, CD),
            "ContractedCost": _decimal(contracted, CD),
            "ListUnitPrice": pc.if_else(
                null_mask, pa.scalar(None, pa.decimal128(38, PD)), _decimal(list_p, PD)
            ),
            "ContractedUnitPrice": pc.if_else(
                null_mask, pa.scalar(None, pa.decimal128(38, PD)), _decimal(list_p, PD)
            ),
            "PricingQuantity": qty_or_null,
            "ConsumedQuantity": qty_or_null,
            "PricingUnit": _strings(
                [None if t[7] == "Credit" else CATALOG[t[0]].pricing_unit for t in _TEMPLATES], tpl
            ),
            "BillingAccountId": _const(BILLING_ACCOUNT_ID, n),
            "BillingAccountName": _const(BILLING_ACCOUNT_NAME, n),
            "BillingCurrency": _const(CURRENCY, n),
            "BillingPeriodStart": pa.array(bp_start, type=pa.timestamp("s", tz="UTC")),
            "BillingPeriodEnd": pa.array(bp_end, type=pa.timestamp("s", tz="UTC")),
            "ChargePeriodStart": pa.array(charge_start, type=pa.timestamp("s", tz="UTC")),
            "ChargePeriodEnd": pa.array(
                charge_start + np.timedelta64(86400, "s"), type=pa.timestamp("s", tz="UTC")
            ),
            "ChargeCategory": _strings(charge_cat, tpl),
            "ChargeFrequency": _strings(["Usage-Based", "One-Time"], credit.astype(np.int32)),
            "PricingCategory": _strings(pricing_cat, tpl),
            "ProviderName": _const(PROVIDER, n),
            "RegionId": _const(REGION_ID, n),
            "ServiceCategory": _strings(col("service_category"), tpl),
            "ServiceSubcategory": _strings(col("service_subcategory"), tpl),
            "ServiceName": _strings(col("service_name"), tpl),
            "SkuId": _strings(col("sku_id"), tpl),
            "SkuMeter": _strings(col("meter"), tpl),
            "ResourceId": resource,
            "Tags": _strings(tags, tpl),
        }
    )
    return table
