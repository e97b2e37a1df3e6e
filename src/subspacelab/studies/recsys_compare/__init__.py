"""Recommendation and CTR comparison: every embedding scheme of unified_embedding
(arXiv:2305.12102) and every feature-selection arm of optfs (arXiv:2301.10909), AUC against
parameter count with their Pareto frontiers, and the recommenders of cm3 (arXiv:2508.01226)
with Recall/NDCG@20."""
