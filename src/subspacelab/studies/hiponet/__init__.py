"""HiPoNet: Multi-View Simplicial Complex Network for High-Dimensional Point Clouds and
Single-Cell Data — Viswanath, Madhu, Bhaskar, Kovalic, Johnson, Tape, Adelstein, Ying,
Perlmutter, Krishnaswamy, 2025 (arXiv 2502.07746).

Official code: KrishnaswamyLab/HiPoNet, under the Yale Non-Commercial License (research use
only; nothing vendored here). The paper's cohorts are clinical data from the authors' lab: see
:mod:`subspacelab.studies.hiponet.full` for their provenance and terms.
"""
