"""SubspaceAD: Training-Free Few-Shot Anomaly Detection via Subspace Modeling.

Camile Lendering, Erkut Akdag, Egor Bondarev. CVPR 2026. arXiv:2602.23013.
Official code (Apache-2.0): https://github.com/CLendering/SubspaceAD
"""
