"""FOCUS 1.2 rows for the synthetic history: the SKU catalogue, a columnar row buffer with exact money,
and deterministic CSV.gz / Parquet writers.

Money is integer: quantities in millionths (``Q``), unit prices in ten-thousandths (``P``), so every
cost ``quantity x unit price`` is an exact integer in units of 1e-10 (``C``) and prints with at most
10 decimals. Sums are therefore reproducible to the last digit.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import io
import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

Q = 10**6  # quantity scale
P = 10**4  # unit-price scale
C = Q * P  # cost scale (1e-10)
QD, PD, CD = 6, 4, 10  # decimals of each scale

BILLING_ACCOUNT_ID = "acct-ecomai-7f3k2"
BILLING_ACCOUNT_NAME = "Ecom AI Platform"
BILLING_ACCOUNT_TYPE = "Billing Account"
PROVIDER = "AWS"
PUBLISHER = "AWS"
INVOICE_ISSUER = "AWS"
REGION_ID = "us-east-1"
REGION_NAME = "US East (N. Virginia)"
CURRENCY = "USD"

SUB_ACCOUNTS: dict[str, tuple[str, str]] = {
    # key -> (SubAccountId, SubAccountName)
    "search": ("sa-search-prod-4e1a", "search-prod"),
    "reco": ("sa-reco-prod-9b2c", "reco-prod"),
    "training": ("sa-ml-training-3d7f", "ml-training"),
    "data": ("sa-data-platform-1c5e", "data-platform"),
    "shared": ("sa-shared-services-8a0b", "shared-services"),
}
SUB_ACCOUNT_TYPE = "Member Account"

#: FOCUS 1.2 Cost and Usage columns written, in file order.
COLUMNS: tuple[str, ...] = (
    "AvailabilityZone",
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingAccountType",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "CapacityReservationId",
    "CapacityReservationStatus",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "CommitmentDiscountCategory",
    "CommitmentDiscountId",
    "CommitmentDiscountName",
    "CommitmentDiscountQuantity",
    "CommitmentDiscountStatus",
    "CommitmentDiscountType",
    "CommitmentDiscountUnit",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "InvoiceId",
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "PricingCategory",
    "PricingCurrency",
    "PricingCurrencyContractedUnitPrice",
    "PricingCurrencyEffectiveCost",
    "PricingCurrencyListUnitPrice",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "ServiceSubcategory",
    "SkuId",
    "SkuMeter",
    "SkuPriceDetails",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "SubAccountType",
    "Tags",
)
COST_COLUMNS = ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost")
PRICE_COLUMNS = (
    "ListUnitPrice",
    "ContractedUnitPrice",
    "PricingCurrencyListUnitPrice",
    "PricingCurrencyContractedUnitPrice",
)
QTY_COLUMNS = ("PricingQuantity", "ConsumedQuantity", "CommitmentDiscountQuantity")
TIME_COLUMNS = ("BillingPeriodStart", "BillingPeriodEnd", "ChargePeriodStart", "ChargePeriodEnd")
SCALE_DIGITS = {
    **{c: CD for c in (*COST_COLUMNS, "PricingCurrencyEffectiveCost")},
    **{c: PD for c in PRICE_COLUMNS},
    **{c: QD for c in QTY_COLUMNS},
}


@dataclass(frozen=True)
class Sku:
    """One billable product: service, meter and units; ``category`` is the cost category the
    generator intends (the ingest derives its own)."""

    key: str
    sku_id: str
    service_name: str
    service_category: str
    service_subcategory: str
    meter: str
    pricing_unit: str
    consumed_unit: str
    category: str
    details: dict[str, Any]
    resource_type: str | None = None
    gpus: int = 0
    gpu: str | None = None
    zonal: bool = True

    def price_id(self, term: str, price: int) -> str:
        """A SkuPriceId per SKU, pricing term and price point (a price change makes a new one)."""
        h = hashlib.sha1(f"{self.sku_id}|{term}|{price}".encode()).hexdigest()[:10].upper()
        return f"{self.sku_id}.{h}"

    @property
    def details_json(self) -> str:
        return json.dumps(self.details, sort_keys=True, separators=(",", ":"))


def _ec2(
    key: str,
    sku_id: str,
    itype: str,
    cores: int,
    mem: int,
    gpus: int,
    gpu: str | None,
    category: str,
) -> Sku:
    details: dict[str, Any] = {
        "CoreCount": cores,
        "InstanceType": itype,
        "InstanceSeries": itype.split(".")[0],
        "MemorySize": mem,
        "OperatingSystem": "Linux",
    }
    if gpus:
        details["GpuCount"] = gpus
        details["x_GpuModel"] = {"H100": "NVIDIA H100", "A10": "NVIDIA A10G"}[gpu or ""]
    return Sku(
        key,
        sku_id,
        "Amazon Elastic Compute Cloud",
        "Compute",
        "Virtual Machines",
        f"{itype} Linux instance hours",
        "Hours",
        "Hours",
        category,
        details,
        "Instance",
        gpus,
        gpu,
    )


CATALOG: dict[str, Sku] = {
    s.key: s
    for s in (
        _ec2("p5", "8QH5KJ2GV4XW7P3N", "p5.48xlarge", 192, 2048, 8, "H100", "compute_gpu"),
        _ec2("g5", "4TZ9RMD2X6CQH8LA", "g5.12xlarge", 48, 192, 4, "A10", "compute_gpu"),
        _ec2("c6i", "7WB3NP5Q2KJX9DRE", "c6i.16xlarge", 64, 128, 0, None, "compute_cpu"),
        _ec2("m6i2", "2FK8VX4HM7QW3TLB", "m6i.2xlarge", 8, 32, 0, None, "compute_cpu"),
        _ec2("m6i1", "9RD4QT6LC3VN2XWA", "m6i.xlarge", 4, 16, 0, None, "compute_cpu"),
        Sku(
            "s3",
            "WP9Q8XH3B5VKD2MT",
            "Amazon Simple Storage Service",
            "Storage",
            "Object Storage",
            "Standard storage GB-month",
            "GB-Months",
            "GB-Months",
            "storage",
            {"StorageClass": "Standard"},
            "Bucket",
            zonal=False,
        ),
        Sku(
            "egress",
            "N6M2KX9RT4VH7QLC",
            "AWS Data Transfer",
            "Networking",
            "Network Connectivity",
            "Data transfer out to internet",
            "GB",
            "GB",
            "network",
            {"x_Direction": "out"},
            zonal=False,
        ),
        Sku(
            "nova_in",
            "BR7X2KQ9MN4TV6WD",
            "Amazon Bedrock",
            "AI and Machine Learning",
            "Generative AI",
            "Amazon Nova Pro input tokens",
            "1000000 Tokens",
            "Tokens",
            "ai_services",
            {"x_ModelId": "amazon.nova-pro-v1:0", "x_TokenType": "input"},
            zonal=False,
        ),
        Sku(
            "nova_out",
            "BR3H8VW5QZ2KD9XN",
            "Amazon Bedrock",
            "AI and Machine Learning",
            "Generative AI",
            "Amazon Nova Pro output tokens",
            "1000000 Tokens",
            "Tokens",
            "ai_services",
            {"x_ModelId": "amazon.nova-pro-v1:0", "x_TokenType": "output"},
            zonal=False,
        ),
        Sku(
            "glue",
            "GL5T9XK2VQ8MW4RB",
            "AWS Glue",
            "Analytics",
            "Data Processing",
            "ETL job DPU hours",
            "Hours",
            "Hours",
            "compute_cpu",
            {"x_Unit": "DPU-Hour"},
            zonal=False,
        ),
        Sku(
            "cwlogs",
            "CW8D4NQ7XK2VT5MH",
            "Amazon CloudWatch",
            "Management and Governance",
            "Observability",
            "Log data ingested",
            "GB",
            "GB",
            "other",
            {"x_LogClass": "Standard"},
            zonal=False,
        ),
    )
}

# Public on-demand / reserved prices (USD, per pricing unit) as integers in units of 1/P.
PRICE = {
    "p5_od_before": 983200,  # 98.32 / h = 8 x 12.29 per H100-hour
    "p5_od_after": 550400,  # 55.04 / h = 8 x 6.88 after the price cut
    "p5_od_future": 467200,  # 46.72 / h = 8 x 5.84, announced
    "g5_od": 56720,  # 5.672 / h = 4 x 1.418 per A10-hour
    "g5_ri": 35740,  # 3.574 / h = 4 x 0.8935 (1-year reserved instance, no upfront)
    "c6i": 27200,  # 2.72 / h = 64 x 0.0425 per vCPU-hour
    "m6i2": 3840,
    "m6i1": 1920,
    "s3": 230,  # 0.023 per GB-month
    "egress": 500,  # 0.05 per GB
    "nova_in": 8000,  # 0.80 per 1M input tokens
    "nova_out": 32000,  # 3.20 per 1M output tokens
    "glue": 4400,  # 0.44 per DPU-hour
    "cwlogs": 5000,  # 0.50 per GB ingested
}


def ts(d: dt.datetime | dt.date) -> str:
    """FOCUS date/time: extended ISO 8601 in UTC with a trailing Z."""
    if not isinstance(d, dt.datetime):
        d = dt.datetime(d.year, d.month, d.day)
    return d.strftime("%Y-%m-%dT%H:%M:%SZ")


def dec(v: int | None, digits: int) -> str | None:
    """An exact decimal string of the integer ``v`` scaled by 10**-digits (trailing zeros dropped)."""
    if v is None:
        return None
    sign = "-" if v < 0 else ""
    q, r = divmod(abs(v), 10**digits)
    if r == 0:
        return f"{sign}{q}"
    frac = str(r).rjust(digits, "0").rstrip("0")
    return f"{sign}{q}.{frac}"


# Internal (non-FOCUS) fields kept per row for truth and usage: the intended phase and category,
# whether tags carry the phase, GPU type and GPU-hours (in 1/Q hours), team.
META = ("phase", "category", "tagged", "gpu", "gpu_hours", "team", "day")


class RowBuffer:
    """Columnar FOCUS rows; integers for money and quantities until they are written."""

    def __init__(self) -> None:
        self.cols: dict[str, list[Any]] = {c: [] for c in (*COLUMNS, *META)}
        self.n = 0

    def add(
        self,
        *,
        day: dt.date,
        sku: Sku | None,
        phase: str,
        category: str,
        sub: str,
        start: dt.datetime,
        end: dt.datetime,
        billed: int,
        effective: int,
        list_cost: int,
        contracted: int,
        qty: int | None,
        list_price: int | None,
        contracted_price: int | None,
        pricing: str | None,
        tags: dict[str, str] | None,
        charge_category: str = "Usage",
        frequency: str = "Usage-Based",
        description: str | None = None,
        consumed: int | None = None,
        resource_id: str | None = None,
        resource_name: str | None = None,
        resource_type: str | None = None,
        az: str | None = None,
        term: str = "OnDemand",
        commitment: dict[str, Any] | None = None,
        capacity: tuple[str, str] | None = None,
        service: tuple[str, str, str] | None = None,
        gpu_hours: int = 0,
        team: str | None = None,
    ) -> None:
        c = self.cols
        period_start = dt.date(day.year, day.month, 1)
        period_end = dt.date(day.year + (day.month == 12), day.month % 12 + 1, 1)
        c["AvailabilityZone"].append(az)
        c["BilledCost"].append(billed)
        c["BillingAccountId"].append(BILLING_ACCOUNT_ID)
        c["BillingAccountName"].append(BILLING_ACCOUNT_NAME)
        c["BillingAccountType"].append(BILLING_ACCOUNT_TYPE)
        c["BillingCurrency"].append(CURRENCY)
        c["BillingPeriodEnd"].append(ts(period_end))
        c["BillingPeriodStart"].append(ts(period_start))
        c["CapacityReservationId"].append(capacity[0] if capacity else None)
        c["CapacityReservationStatus"].append(capacity[1] if capacity else None)
        c["ChargeCategory"].append(charge_category)
        c["ChargeClass"].append(None)
        c["ChargeDescription"].append(description or (sku.meter if sku else None))
        c["ChargeFrequency"].append(frequency)
        c["ChargePeriodEnd"].append(ts(end))
        c["ChargePeriodStart"].append(ts(start))
        cm = commitment or {}
        c["CommitmentDiscountCategory"].append(cm.get("category"))
        c["CommitmentDiscountId"].append(cm.get("id"))
        c["CommitmentDiscountName"].append(cm.get("name"))
        c["CommitmentDiscountQuantity"].append(cm.get("quantity"))
        c["CommitmentDiscountStatus"].append(cm.get("status"))
        c["CommitmentDiscountType"].append(cm.get("type"))
        c["CommitmentDiscountUnit"].append(cm.get("unit"))
        c["ConsumedQuantity"].append(consumed)
        c["ConsumedUnit"].append(sku.consumed_unit if (sku and consumed is not None) else None)
        c["ContractedCost"].append(contracted)
        c["ContractedUnitPrice"].append(contracted_price)
        c["EffectiveCost"].append(effective)
        c["InvoiceId"].append(f"INV-{period_start:%Y%m}-{BILLING_ACCOUNT_ID.upper()}")
        c["InvoiceIssuerName"].append(INVOICE_ISSUER)
        c["ListCost"].append(list_cost)
        c["ListUnitPrice"].append(list_price)
        c["PricingCategory"].append(pricing)
        # Prices are in the billing currency: the pricing-currency columns repeat them.
        c["PricingCurrency"].append(CURRENCY)
        c["PricingCurrencyContractedUnitPrice"].append(contracted_price)
        c["PricingCurrencyEffectiveCost"].append(effective)
        c["PricingCurrencyListUnitPrice"].append(list_price)
        c["PricingQuantity"].append(qty)
        c["PricingUnit"].append(sku.pricing_unit if (sku and qty is not None) else None)
        c["ProviderName"].append(PROVIDER)
        c["PublisherName"].append(PUBLISHER)
        c["RegionId"].append(REGION_ID)
        c["RegionName"].append(REGION_NAME)
        c["ResourceId"].append(resource_id)
        c["ResourceName"].append(resource_name if resource_id else None)
        c["ResourceType"].append(
            (resource_type or (sku.resource_type if sku else None)) if resource_id else None
        )
        svc = service or (
            (sku.service_category, sku.service_name, sku.service_subcategory) if sku else None
        )
        assert svc is not None
        c["ServiceCategory"].append(svc[0])
        c["ServiceName"].append(svc[1])
        c["ServiceSubcategory"].append(svc[2])
        price_for_id = list_price if list_price is not None else 0
        c["SkuId"].append(sku.sku_id if sku else None)
        c["SkuMeter"].append(sku.meter if sku else None)
        c["SkuPriceDetails"].append(sku.details_json if sku else None)
        c["SkuPriceId"].append(sku.price_id(term, price_for_id) if sku else None)
        sid, sname = SUB_ACCOUNTS[sub]
        c["SubAccountId"].append(sid)
        c["SubAccountName"].append(sname)
        c["SubAccountType"].append(SUB_ACCOUNT_TYPE)
        c["Tags"].append(
            json.dumps(tags, sort_keys=True, separators=(",", ":")) if tags is not None else None
        )
        c["phase"].append(phase)
        c["category"].append(category)
        c["tagged"].append(bool(tags and "phase" in tags))
        c["gpu"].append(sku.gpu if sku else None)
        c["gpu_hours"].append(gpu_hours)
        c["team"].append(team)
        c["day"].append(day)
        self.n += 1

    def take(self, index: list[int]) -> dict[str, list[Any]]:
        return {k: [v[i] for i in index] for k, v in self.cols.items()}


# --- writing ----------------------------------------------------------------------------------
def _gzip_bytes(data: bytes) -> bytes:
    buf = io.BytesIO()
    # mtime=0 and no file name in the header: same input, same bytes.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=6) as gz:
        gz.write(data)
    return buf.getvalue()


def write_csv_gz(cols: dict[str, list[Any]], path: Path) -> None:
    """FOCUS CSV, gzipped; nulls written as the word NULL (as real exports do)."""
    text = io.StringIO()
    w = csv.writer(text, lineterminator="\n")
    w.writerow(COLUMNS)
    n = len(cols[COLUMNS[0]])
    out_cols = []
    for c in COLUMNS:
        digits = SCALE_DIGITS.get(c)
        vals = cols[c]
        if digits is not None:
            out_cols.append([("NULL" if v is None else dec(v, digits)) for v in vals])
        else:
            out_cols.append([("NULL" if v is None else v) for v in vals])
    for i in range(n):
        w.writerow([col[i] for col in out_cols])
    path.write_bytes(_gzip_bytes(text.getvalue().encode("utf-8")))


def _arrow_table(cols: dict[str, list[Any]]) -> pa.Table:
    arrays = {}
    for c in COLUMNS:
        vals = cols[c]
        digits = SCALE_DIGITS.get(c)
        if digits is not None:
            arrays[c] = pa.array(
                [None if v is None else Decimal(v).scaleb(-digits) for v in vals],
                type=pa.decimal128(38, digits),
            )
        elif c in TIME_COLUMNS:
            arrays[c] = pa.array(
                [
                    dt.datetime.strptime(v, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
                    for v in vals
                ],
                type=pa.timestamp("s", tz="UTC"),
            )
        else:
            arrays[c] = pa.array(vals, type=pa.string())
    return pa.table(arrays)


def write_parquet(cols: dict[str, list[Any]], path: Path) -> None:
    """FOCUS Parquet with typed columns (decimals, UTC timestamps, strings); fixed writer settings."""
    pq.write_table(
        _arrow_table(cols),
        path,
        compression="zstd",
        compression_level=3,
        use_dictionary=True,
        write_statistics=True,
        version="2.6",
        data_page_version="1.0",
    )
