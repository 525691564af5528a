"""``phasecast evaluate``: the full forecasting job scored against a known future
(:mod:`pipeline.evaluate`): generated cost hierarchies with their plan (``hierarchy``), the same
without a plan (``hierarchy-no-plan``: unannounced bursts), and the demo world with its last
months held out (``demo-world``); histories of 24-48 months. Prints accuracy and 80 / 95 % coverage
per horizon band, per model and for the published forecast, and the promotion-month error ratio."""

from __future__ import annotations

from pathlib import Path

import click

from pipeline.cli import cli
from pipeline.cli.options import outside_run_folders


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
@click.option(
    "--horizon",
    type=click.IntRange(1, 36),
    default=18,
    show_default=True,
    help="Months of known future forecast and scored after each cut.",
)
@click.option(
    "--collection",
    "collections",
    type=click.Choice(["hierarchy", "hierarchy-no-plan", "demo-world"]),
    multiple=True,
    default=("hierarchy", "hierarchy-no-plan", "demo-world"),
    show_default=True,
    help="What to score (repeat the option).",
)
@click.option(
    "--demo-hold-out",
    type=click.IntRange(1, 18),
    default=12,
    show_default=True,
    help="Months of the demo world (36 months) held out as its known future.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    callback=outside_run_folders,
    help="Also write the per-band table here (CSV), and the published coverage per history "
    "length beside it (NAME-by-length.csv).",
)
def evaluate_cmd(
    seeds: tuple[int, ...],
    months: tuple[int, ...],
    horizon: int,
    collections: tuple[str, ...],
    demo_hold_out: int,
    output: Path | None,
) -> None:
    """Score every model and the published forecast on generated histories with a known future."""
    import warnings

    from pipeline.evaluate import evaluate, summary

    warnings.filterwarnings("ignore")
    med, promos, by_length = evaluate(
        tuple(seeds), tuple(months), horizon, tuple(collections), demo_hold_out=demo_hold_out
    )

    fmt = {c: "{:.3f}".format for c in med.columns if c not in ("collection", "model", "band")}
    runs = len(seeds) * len(months)
    said = [f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"]
    if {"hierarchy", "hierarchy-no-plan"} & set(collections):
        said.append(
            f"generated hierarchies: histories of {', '.join(map(str, months))} months, horizon {horizon}, "
            f"medians over the {runs} run{'s' if runs > 1 else ''}"
        )
    if "demo-world" in collections:
        said.append(
            f"demo world: 36 months, the last {demo_hold_out} held out, medians over the "
            f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''}"
        )
    click.echo("; ".join(said) + "\n")
    for name, part in med.groupby("collection", sort=False):
        click.echo(f"== {name}")
        # a standard error of one run is not a number: "-"
        table = part.drop(columns="collection")
        click.echo(table.to_string(index=False, formatters=fmt, na_rep="-"))
        click.echo("")
    click.echo("")
    for line in summary(med, promos, by_length):
        click.echo(line)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        med.to_csv(output, index=False, float_format="%.4f")
        by_length.to_csv(
            output.with_name(output.stem + "-by-length.csv"), index=False, float_format="%.4f"
        )
