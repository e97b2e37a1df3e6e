"""Clustering based Point Cloud Representation Learning for 3D Analysis (arXiv 2307.14605).

Tuo Feng, Wenguan Wang, Xiaohan Wang, Yi Yang, Qinghua Zheng; ICCV 2023. A training-only
add-on for point-cloud segmentation: each class's embedding space is split into K sub-classes
(online, equipartitioned by Sinkhorn-Knopp, EMA sub-centroids) and points are contrasted with
the sub-centroids, with each other and with a cross-scene memory queue; inference is the plain
backbone. The miniature (mini profile): ray-cast LiDAR-like scenes with sub-typed cars and
vegetation, DGCNN-lite, CE + Lovász with and without the cluster contrast. The full profile
reads SemanticKITTI (val sequence 08).

Licences: SemanticKITTI and the KITTI odometry scans are CC BY-NC-SA 3.0 (non-commercial use
only; obtain them yourself); the official code (FengZicai/Cluster3DSeg) is MIT.
"""
