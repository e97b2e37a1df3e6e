"""cm3: calibrated uniformity and spherical fusion for multimodal recommendation (CM³).

Zhou, Wang, Shen 2025, arXiv:2508.01226.
"""
