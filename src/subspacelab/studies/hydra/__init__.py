"""Rethinking Positive Pairs in Contrastive Learning (Hydra/SimLAP) (arXiv 2410.18200).

Scaffolded by ``python -m subspacelab new``: the method below is a placeholder to replace with
the paper's (config.py: its hyperparameters; core.py: its maths; study.py: steps and claims).
"""
