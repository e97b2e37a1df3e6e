"""Neural Collapse in Deep Linear Networks: From Balanced to Imbalanced Data.

Hien Dang, Tho Tran, Stanley Osher, Hung Tran-The, Nhat Ho, Tan Nguyen. ICML 2023,
arXiv:2301.00437.
"""
