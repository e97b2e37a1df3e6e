"""Using Mechanistic Interpretability to Craft Adversarial Attacks against LLMs (measurement side) (arXiv 2503.06269).

Scaffolded by ``python -m subspacelab new``: the method below is a placeholder to replace with
the paper's (config.py: its hyperparameters; core.py: its maths; study.py: steps and claims).
"""
