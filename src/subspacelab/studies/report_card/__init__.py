"""Geometry report card: the probes of the geometry-of-trained-networks group (Sagun et al.,
arXiv:1706.04454; Dang et al., arXiv:2301.00437; Papyan, Han & Donoho 2020) applied to the
models other studies of the lab train (the GCR heads of Wang, Li & Zhang, arXiv:2308.01547)."""
