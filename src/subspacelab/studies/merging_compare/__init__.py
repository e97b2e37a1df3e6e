"""Merging and adaptation comparison: every merge of dc_merge (arXiv:2603.06242) and
concrete_merge (arXiv:2312.06173) on the same task zoo, and every adapter of flora
(arXiv:2405.14739) with its exact parameter budget (matched only where the counts show it)."""
