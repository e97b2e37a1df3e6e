"""Geometric Deep Learning: Grids, Groups, Graphs, Geodesics, and Gauges (arXiv 2104.13478).

Scaffolded by ``python -m subspacelab new``: the method below is a placeholder to replace with
the paper's (config.py: its hyperparameters; core.py: its maths; study.py: steps and claims).
"""
