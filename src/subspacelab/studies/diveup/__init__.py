"""DiveUp: Learning Feature Upsampling from Diverse Vision Foundation Models — Xiaoqiong Liu and
Heng Fan, 2026, arXiv 2603.13571.

An encoder-agnostic image-guided feature upsampler (NAF's neighbourhood attention) trained with
relational guidance from several VFMs (centre-of-mass fields, spiky experts left out) instead of
self-reconstruction. Official code (inference only): github.com/Xiaoqiong-Liu/DiveUp, MIT per
its README. Mini profile: stand-in experts with injected pathologies (study.py); full profile:
the released weights on VOC / ADE20K (full.py; ADE20K is for non-commercial research only).
"""
