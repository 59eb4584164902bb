"""The run directory: its files, metrics, plots and results."""
