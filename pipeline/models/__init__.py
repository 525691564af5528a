"""Forecasting models, chosen by name from :data:`REGISTRY`.

Every entry is a :class:`~pipeline.models.base.Forecaster` subclass; ``make_model(name, **params)``
builds one with explicit hyperparameters. Models whose dependencies are heavy import lazily.
"""

from __future__ import annotations

from typing import Any

from pipeline.errors import InputError
from pipeline.models.base import Forecaster
from pipeline.models.baseline import AnalyticBaseline
from pipeline.models.gbm import LightGBMForecaster
from pipeline.models.naive import SeasonalNaive
from pipeline.models.stats import AutoETS, Sarimax, Theta
from pipeline.models.unit_cost import UnitCost

REGISTRY: dict[str, type[Forecaster]] = {
    AnalyticBaseline.name: AnalyticBaseline,
    SeasonalNaive.name: SeasonalNaive,
    AutoETS.name: AutoETS,
    Theta.name: Theta,
    Sarimax.name: Sarimax,
    LightGBMForecaster.name: LightGBMForecaster,
    UnitCost.name: UnitCost,
}


def register(cls: type[Forecaster]) -> type[Forecaster]:
    """Add a model class under its ``name`` (usable as a decorator)."""
    REGISTRY[cls.name] = cls
    return cls


def make_model(name: str, **params: Any) -> Forecaster:
    """A model by registry name, built with keyword hyperparameters."""
    try:
        cls = REGISTRY[name]
    except KeyError:
        raise InputError(
            f"unknown model {name!r}; known models are {sorted(REGISTRY)}",
            fix="pick one of the registered model names",
        ) from None
    return cls(**params)


from pipeline.models.ensemble import Ensemble  # noqa: E402  (imports base only; no cycle)

register(Ensemble)
