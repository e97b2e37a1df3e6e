"""Datasets: embedded ones that need no network, and real downloaders checked by SHA-256."""
