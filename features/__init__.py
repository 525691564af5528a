"""Features: plain typed functions, one module per kind (calendar, lags, drivers, baseline)."""
