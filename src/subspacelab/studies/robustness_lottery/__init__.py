"""Understanding Robustness Lottery: A Geometric Visual Comparative Analysis of Neural Network
Pruning Approaches.

Zhimin Li, Shusen Liu, Xin Yu, Bhavya Kailkhura, Jie Cao, James Diffenderfer, Peer-Timo Bremer,
Valerio Pascucci. 2022, arXiv:2206.07918.
"""
