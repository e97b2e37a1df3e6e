"""Clustering based Point Cloud Representation Learning for 3D Analysis (arXiv 2307.14605).

Scaffolded by ``python -m subspacelab new``: the method below is a placeholder to replace with
the paper's (config.py: its hyperparameters; core.py: its maths; study.py: steps and claims).
"""
