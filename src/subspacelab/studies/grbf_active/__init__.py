"""grbf_active: Gaussian RBF networks with a learnable precision matrix recover active subspaces
and rank features.

D'Agostino, Ilievski & Shoemaker, "Learning active subspaces and discovering important features
with Gaussian radial basis functions neural networks", Neural Networks 176 (2024) 106335,
arXiv:2307.05639.
"""
