"""molrg_diffusion: diffusion models learn low-dimensional distributions via subspace clustering.

Wang, Zhang, Zhang, Chen, Ma & Qu, "Diffusion Models Learn Low-Dimensional Distributions via
Subspace Clustering", 2024, arXiv:2409.02426.
"""
