"""S2CAG and M-S2CAG: spectral subspace clustering for attributed graphs.

Lin, Yang, Zheng & Ke, KDD 2025, arXiv:2411.11074.
"""
