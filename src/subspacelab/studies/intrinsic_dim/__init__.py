"""Measuring the Intrinsic Dimension of Objective Landscapes.

C. Li, H. Farkhoor, R. Liu and J. Yosinski, ICLR 2018, arXiv:1804.08838. Networks are trained
only inside a random affine subspace ``θ₀ + P θ_d`` of their parameter space; the intrinsic
dimension d_int90 is the smallest ``d`` reaching 90% of the full-space baseline's performance.
"""
