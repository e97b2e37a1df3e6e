"""Prefect 3 flows built from the study registry (see flows/lab.py)."""
