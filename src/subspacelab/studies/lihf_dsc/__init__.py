"""LIHF-DSC: label-independent, hyperparameter-free deep subspace clustering.

Sindičić & Kopriva, 2025, arXiv:2504.18179.
"""
