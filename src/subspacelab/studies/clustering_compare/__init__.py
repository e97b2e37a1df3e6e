"""Comparison of the subspace-clustering group: MLC (arXiv:2301.01805), LIHF-DSC
(arXiv:2504.18179), S2CAG (arXiv:2411.11074), geo_sae's stacked AE + k-means (Nagar et al.,
Adv. Space Res. 2024) and the k-means, spectral, LSR, SSC and LRR baselines on the same inputs."""
