"""unified_embedding: feature multiplexing and Unified Embedding against per-field hashing.

Coleman, Kang, Fahrbach, Wang, Hong, Chi, Cheng, NeurIPS 2023, arXiv:2305.12102.
"""
