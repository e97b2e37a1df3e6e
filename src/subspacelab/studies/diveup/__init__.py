"""DiveUp: Learning Feature Upsampling from Diverse Vision Foundation Models (arXiv 2603.13571).

Scaffolded by ``python -m subspacelab new``: the method below is a placeholder to replace with
the paper's (config.py: its hyperparameters; core.py: its maths; study.py: steps and claims).
"""
