"""Workflows: the analysis, sweeps, batch evaluation, defence tables, session records, export, provenance."""
