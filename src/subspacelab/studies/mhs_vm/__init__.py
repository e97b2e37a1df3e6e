"""MHS-VM: Multi-Head Scanning in Parallel Subspaces for Vision Mamba (arXiv 2406.05992).

Scaffolded by ``python -m subspacelab new``: the method below is a placeholder to replace with
the paper's (config.py: its hyperparameters; core.py: its maths; study.py: steps and claims).
"""
