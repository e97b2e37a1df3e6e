"""Convergent Learning: Do different neural networks learn the same representations?

Yixuan Li, Jason Yosinski, Jeff Clune, Hod Lipson, John Hopcroft. ICLR 2016, arXiv:1511.07543.
"""
