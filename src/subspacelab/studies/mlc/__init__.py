"""MLC: Unsupervised Manifold Linearizing and Clustering.

Ding, Tong, Chan, Dai, Ma & Haeffele, ICCV 2023, arXiv:2301.01805.
"""
