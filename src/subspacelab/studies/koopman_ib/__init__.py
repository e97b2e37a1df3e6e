"""koopman_ib: Information Shapes Koopman Representation.

Xiaoyuan Cheng, Wenxuan Yuan, Yiming Yang, Yuanzhao Zhang, Sibo Cheng, Yi He, Zhuo Sun;
ICLR 2026; arXiv:2510.13025.
"""
