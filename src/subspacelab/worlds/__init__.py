"""Synthetic worlds: seeded generators with their analytic ground truth, and exact metrics.

The synthetic-worlds group (issue 15) tests methods where the answer is known: mixtures of
low-rank Gaussians (molrg_diffusion), functions of an active subspace (grbf_active), dynamical
systems with known Koopman eigenvalues (koopman_ib), manifolds with known operator eigenspaces
(eigenstructures) and factor images (xfactors). One module per world; every generator returns its
truth beside its samples, and every metric is tested on a known answer.
"""
