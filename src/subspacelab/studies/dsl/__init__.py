"""Attention-based Dynamic Subspace Learners for Medical Image Analysis (arXiv 2206.09068).

Scaffolded by ``python -m subspacelab new``: the method below is a placeholder to replace with
the paper's (config.py: its hyperparameters; core.py: its maths; study.py: steps and claims).
"""
