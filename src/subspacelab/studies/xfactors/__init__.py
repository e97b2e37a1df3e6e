"""xfactors: XFACTORS: Disentangled Information Bottleneck via Contrastive Supervision.

Anonymous ICML 2026 submission; no arXiv id was found (the study's arxiv field is empty).
"""
