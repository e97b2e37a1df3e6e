"""TreeSynth: Synthesizing Diverse Data from Scratch via Tree-Guided Subspace Partitioning.

Sheng Wang et al. (10 authors), arXiv preprint 2025, arXiv:2503.17195; official code
github.com/cpa2001/TreeSynth (Apache-2.0). The miniature replaces the LLM generator by a simulated
one over a known attribute space (core.py); the full profile talks to an LLM server (full.py).
"""
