"""optfs: feature-value selection by gated embeddings learned by continuation (OptFS).

Lyu, Tang, Liu, Chen, He, Liu, WWW 2023, arXiv:2301.10909.
"""
