"""Stacked autoencoders + k-means for lithological mapping from multispectral scenes.

Nagar, Farahbakhsh, Awange & Chandra, "Remote sensing framework for geological mapping via
stacked autoencoders and clustering", Advances in Space Research 2024,
doi:10.1016/j.asr.2024.09.013; arXiv 2404.02180.
"""
