"""phasecast: per-phase cost forecasts, budgets and overrun flags for large AI models."""

__version__ = "0.1.0"
