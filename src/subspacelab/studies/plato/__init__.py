"""Escaping Plato's Cave: Towards the Alignment of 3D and Text Latent Spaces (arXiv 2503.05283).

Scaffolded by ``python -m subspacelab new``: the method below is a placeholder to replace with
the paper's (config.py: its hyperparameters; core.py: its maths; study.py: steps and claims).
"""
