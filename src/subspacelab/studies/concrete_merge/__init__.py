"""Concrete Subspace Learning based Interference Elimination for Multi-task Model Fusion. Tang,
Shen, Luo, Ding, Hu, Du, Tao, arXiv:2312.06173."""
