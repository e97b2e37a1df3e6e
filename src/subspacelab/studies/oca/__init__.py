"""Backward-Compatible Aligned Representations via an Orthogonal Transformation Layer. Ricci,
Biondi, Pernici, Del Bimbo, ECCV 2024 workshops, arXiv:2408.08793."""
