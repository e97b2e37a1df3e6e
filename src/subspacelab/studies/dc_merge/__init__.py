"""DC-Merge: Improving Model Merging with Directional Consistency. Zhang, Zhou, Luo, Di, Zhang,
Wei, CVPR 2026, arXiv:2603.06242."""
