"""``phasecast evaluate``: the full forecasting job scored against a known future, on generated
cost hierarchies (:mod:`pipeline.evaluate`); prints accuracy and 80 / 95 % coverage per horizon
band, per model and for the published forecast, and the promotion-month error ratio."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.cli import cli


@cli.command("evaluate")
@click.option(
    "--seed",
    "seeds",
    type=int,
    multiple=True,
    default=(1, 2, 3, 4, 5),
    show_default=True,
    help="Seeds of the generated hierarchies (repeat the option).",
)
@click.option(
    "--months",
    "months",
    type=click.IntRange(18, 120),
    multiple=True,
    default=(24, 36, 48),
    show_default=True,
    help="Months of history per hierarchy (repeat the option).",
)
@click.option("--horizon", type=click.IntRange(1, 36), default=18, show_default=True)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the per-band table here (CSV).",
)
def evaluate_cmd(
    seeds: tuple[int, ...], months: tuple[int, ...], horizon: int, output: Path | None
) -> None:
    """Score every model and the published forecast on generated histories with a known future."""
    import warnings

    from pipeline.evaluate import evaluate, summary

    warnings.filterwarnings("ignore")
    med, promos = evaluate(tuple(seeds), tuple(months), horizon)
    fmt = {c: "{:.3f}".format for c in med.columns if c not in ("model", "band")}
    click.echo(
        f"generated cost hierarchies: seeds {list(seeds)} x histories {list(months)} months, "
        f"horizon {horizon}; medians over the {len(seeds) * len(months)} runs\n"
    )
    click.echo(med.to_string(index=False, formatters=fmt))
    click.echo("")
    for line in summary(med, promos):
        click.echo(line)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        med.to_csv(output, index=False, float_format="%.4f")
