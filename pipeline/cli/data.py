"""Commands: ``synth`` (generate a realistic sample history)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import click

from pipeline.cli import cli
from pipeline.config import Paths


@cli.command()
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output folder (default: data/sample under --home).",
)
@click.option(
    "--months", type=int, default=36, show_default=True, help="Complete months of history."
)
@click.option(
    "--seed", type=int, default=42, show_default=True, help="Random seed (same seed, same bytes)."
)
@click.option("--end", default="2026-10", show_default=True, help="Last complete month, YYYY-MM.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "parquet"]),
    default="csv",
    show_default=True,
    help="Billing files as gzipped CSV or Parquet.",
)
@click.option(
    "--partial-days",
    type=int,
    default=14,
    show_default=True,
    help="Days of the month after --end exported as the current, partial month.",
)
@click.option(
    "--no-phase-tags",
    is_flag=True,
    help="Write billing Tags without the 'phase' key, as most real exports are (truth.json keeps the phases).",
)
@click.pass_obj
def synth(
    paths: Paths,
    out: Path | None,
    months: int,
    seed: int,
    end: str,
    fmt: str,
    partial_days: int,
    no_phase_tags: bool,
) -> None:
    """Generate a realistic FOCUS 1.2 billing history, usage, labor, plan and budgets."""
    from pipeline.synth import SynthConfig, generate

    cfg = SynthConfig(
        out=out or paths.sample,
        months=months,
        seed=seed,
        end=end,
        fmt=fmt,
        partial_days=partial_days,
        phase_tags=not no_phase_tags,
        progress=True,
    )
    res = generate(cfg)
    click.echo(
        f"wrote {len(res.billing_files)} billing files ({res.rows} rows) and usage, labor, plan, budgets, "
        f"truth under {res.out}"
    )
    # money to the cent for reading; the exact decimals (every digit the exports carry, what
    # ``ingest`` reconciles to) are in truth.json
    cents = ", ".join(
        f"{k} {Decimal(v).quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,}"
        for k, v in res.totals.items()
    )
    click.echo(
        f"totals ({res.truth.get('currency', '')}; exact to the last digit in truth.json): {cents}"
    )
