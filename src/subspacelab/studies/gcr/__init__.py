"""Grassmann Class Representation (GCR).

H. Wang, Z. Li and W. Zhang, "Get the Best of Both Worlds: Improving Accuracy and
Transferability by Grassmann Class Representation", ICCV 2023, arXiv:2308.01547.

Each class is a k-dimensional subspace of the feature space, the logit of a feature is
γ‖S_iᵀ x̂‖, and the subspaces are trained with Riemannian SGD on the Grassmann manifold. The
study compares source accuracy, linear-probe transfer and class separation against a softmax and
a cosine-softmax head.
"""
