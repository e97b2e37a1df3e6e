"""DiffuMatch: Category-Agnostic Spectral Diffusion Priors for Robust Non-rigid Shape Matching (arXiv 2507.23715).

Scaffolded by ``python -m subspacelab new``: the method below is a placeholder to replace with
the paper's (config.py: its hyperparameters; core.py: its maths; study.py: steps and claims).
"""
