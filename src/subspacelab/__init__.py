"""subspace-lab: a reproducible laboratory for subspace methods in representation learning."""

__version__ = "0.1.0"
