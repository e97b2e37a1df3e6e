"""Empirical Analysis of the Hessian of Over-Parametrized Neural Networks.

Levent Sagun, Utku Evci, V. Uğur Güney, Yann Dauphin, Léon Bottou. ICLR 2018 workshop,
arXiv:1706.04454.
"""
