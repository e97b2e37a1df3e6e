"""eigenstructures: a network trained to reconstruct random probe functions learns a manifold's
spectral basis, its sampling density and eigenvalues without a mesh or an eigensolver.

Velich, Piven, Bensaïd, Cremers, Dagès & Kimmel, "Learning Eigenstructures of Unstructured Data
Manifolds", CVPR 2026, arXiv:2512.01103.
"""
