"""ShapeSplat: A Large-scale Dataset of Gaussian Splats and Their Self-Supervised Pretraining
(Qi Ma, Yue Li, Bin Ren, Nicu Sebe, Ender Konukoglu, Theo Gevers, Luc Van Gool, Danda Pani
Paudel; 3DV 2025; arXiv 2408.10906).

The miniature (spec §6) replaces optimised 3D Gaussian Splats by Gaussian-mixture fits of
procedural primitives and trains Gaussian-MAE-mini (shapes/pointmae.py) on them; see study.py.
Licences: the official repository has no LICENSE (all rights reserved); ShapeSplat follows
ShapeNet's non-commercial terms, ModelNet-Splats ModelNet's academic-use terms.
"""
