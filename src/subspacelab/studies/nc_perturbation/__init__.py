"""Perturbation Analysis of Neural Collapse.

Tom Tirer, Haoxiang Huang, Jonathan Niles-Weed. ICML 2023, arXiv:2210.16658.
"""
