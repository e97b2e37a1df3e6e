"""DiffuMatch: Category-Agnostic Spectral Diffusion Priors for Robust Non-rigid Shape Matching.

Pierson, Li, Dai, Ovsjanikov, ICCV 2025, arXiv 2507.23715. Official code (Apache-2.0; its vendored
NVlabs EDM is CC BY-NC-SA): github.com/daidedou/diffumatch. The miniature matches blob shapes of
an unseen category with a spectral diffusion prior, an axiomatic regulariser and none.
"""
