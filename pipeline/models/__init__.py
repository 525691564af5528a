"""Forecasting models, chosen by name from :data:`REGISTRY`."""
