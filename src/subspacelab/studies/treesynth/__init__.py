"""TreeSynth: Synthesizing Diverse Data via Tree-Guided Subspace Partitioning (arXiv 2503.17195).

Scaffolded by ``python -m subspacelab new``: the method below is a placeholder to replace with
the paper's (config.py: its hyperparameters; core.py: its maths; study.py: steps and claims).
"""
