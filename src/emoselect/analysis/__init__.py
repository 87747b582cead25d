"""Statistics on arrays and tables: tuning, selectivity, experiments, the scorecard (numpy/pandas; no torch)."""
