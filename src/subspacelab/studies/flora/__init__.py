"""FLoRA: Low-Rank Core Space for N-dimension (Maintaining Structural Integrity in Parameter
Spaces for PEFT). Si, Wang, Yang, Xu, Li, Dai, Qiao, Yang, Shen, arXiv:2405.14739."""
