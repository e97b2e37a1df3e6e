"""Using Mechanistic Interpretability to Craft Adversarial Attacks against Large Language Models:
subspace rerouting, measurement side.

Winninger, Addad, Kapusta, 2025, arXiv 2503.06269. Harmful and harmless instructions separate
linearly in an LLM's residual stream; a difference-in-means "refusal direction" r̂ per layer
behaves like a linear probe; ablating it suppresses refusal; optimising input tokens to move
activations into the acceptance subspace (SSR) jailbreaks. Here (issue 17), the miniature is a
synthetic token language with abstract restricted tokens and no harmful content anywhere; the
suffix optimisation runs on that toy transformer only. The full profile only measures
directions and probes in an open chat model's layers and stops there: there is no attack or
suffix-optimisation path that can target a real model, and the config refuses the full
profile's model together with the suffix step.
"""
