"""ULSAM: Ultra-Lightweight Subspace Attention Module.

Saini, Jha, Das, Mittal, Mohan, WACV 2020, arXiv 2006.15102. The channels are split into g
subspaces; each gets one spatial attention map (depthwise 1×1 conv, 3×3 max-pool, pointwise conv
to one map, softmax over the positions), applied multiplicatively with a residual. The module
costs O(m) parameters, so it can replace a late 1×1-heavy block of a compact CNN. The miniature:
a MobileNet-V1-style CNN on cluttered digits (``subspacelab.modules.clutter``), with ULSAM
inserted after the last block or replacing it; parameters and MACs from
``subspacelab.modules.count``.
"""
