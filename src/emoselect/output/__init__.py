"""Outputs from tables: figures (matplotlib without pyplot) and report.html (no torch)."""
