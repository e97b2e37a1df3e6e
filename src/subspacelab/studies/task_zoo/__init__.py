"""Task zoo: the shared merge-bench of dc_merge (arXiv:2603.06242) and concrete_merge
(arXiv:2312.06173): a base model and fine-tuned task models, built once and cached by DVC."""
