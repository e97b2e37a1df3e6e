"""modules_compare: the attention and gating modules of the heads/modules group on one backbone.

ULSAM (Saini et al., arXiv:2006.15102) inserted and replacing, squeeze-and-excitation (Hu et al.,
arXiv:1709.01507), CBAM's spatial attention (Woo et al., arXiv:1807.06521) and hydra's class-pair
gate as a feature filter (Wu et al., arXiv:2410.18200), all on ulsam's compact CNN and
cluttered digits: the same data, seeds and batches; accuracy, parameters, MACs, CPU latency.
"""
