"""Rethinking Positive Pairs in Contrastive Learning (Hydra; SimLAP in v2).

Wu, Atito, Feng, Mo, Kittler, Awais, 2024, arXiv 2410.18200. Contrastive learning with
arbitrary class pairs as positives: a class-pair-conditioned gate (sigmoid feature filter,
``subspacelab.modules.gates.ClassPairGate``) selects the subspace of the projection in which the
pair shares features, negatives exclude both classes, and a linear head on the detached
representation is trained alongside. The miniature: a 1-D CNN on MNIST-1D with SimLAP
(arbitrary / distinct pairs), distinct pairs without the gate, SupCon and cross-entropy.
"""
