"""ShapeSplat: A Large-scale Dataset of Gaussian Splats and Their Self-Supervised Pretraining (arXiv 2408.10906).

Scaffolded by ``python -m subspacelab new``: the method below is a placeholder to replace with
the paper's (config.py: its hyperparameters; core.py: its maths; study.py: steps and claims).
"""
