"""A seeded multimodal catalogue with users, for the cm3 miniature (Zhou, Wang, Shen 2025,
arXiv:2508.01226).

Items have a latent topic (20) and three attributes (colour, material, style). Their *text* is a
templated English description (encoded elsewhere, e.g. with MiniLM), their *image* a fixed
random projection of the one-hot (topic, attributes) plus noise. Users prefer 2-3 topics with
Dirichlet weights and one taste per attribute; each interacts with ``n_per_user`` distinct items
drawn by a softmax of the latent affinity (Gumbel top-k). Interactions are split per user
80/10/10 (train/validation/test) in random order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TOPICS: tuple[tuple[str, tuple[str, str, str]], ...] = (
    ("hiking", ("boots", "backpack", "trekking poles")),
    ("cooking", ("skillet", "chef knife", "spice rack")),
    ("jazz listening", ("vinyl record", "turntable", "saxophone reed")),
    ("gardening", ("trowel", "planter", "watering can")),
    ("running", ("sneakers", "running vest", "sports watch")),
    ("a newborn baby", ("onesie", "baby bottle", "stroller blanket")),
    ("photography", ("camera strap", "lens cap", "tripod")),
    ("yoga practice", ("yoga mat", "meditation cushion", "yoga block")),
    ("coffee brewing", ("pour-over kettle", "coffee grinder", "espresso cup")),
    ("reading", ("bookmark", "reading lamp", "book cover")),
    ("cycling", ("bike helmet", "cycling gloves", "bottle cage")),
    ("painting", ("brush set", "easel", "canvas pad")),
    ("camping", ("tent", "sleeping bag", "camp stove")),
    ("fishing", ("fishing rod", "tackle box", "fishing hat")),
    ("video gaming", ("game controller", "gaming headset", "mouse pad")),
    ("swimming", ("swim goggles", "swimsuit", "pool towel")),
    ("tea time", ("teapot", "tea infuser", "tea cup")),
    ("skiing", ("ski goggles", "ski gloves", "thermal socks")),
    ("a pet dog", ("dog leash", "dog bed", "chew toy")),
    ("the home office", ("desk organiser", "notebook", "desk lamp")),
)
ATTRIBUTES: tuple[tuple[str, ...], ...] = (
    ("red", "blue", "green", "black", "white", "yellow", "grey", "brown"),
    ("wool", "cotton", "leather", "steel", "bamboo", "plastic"),
    ("classic", "modern", "rustic", "minimalist", "vintage"),
)


@dataclass(frozen=True)
class Catalogue:
    """Items (topic, attributes, text, image features), users and their split interactions."""

    topic: np.ndarray
    attributes: np.ndarray
    texts: tuple[str, ...]
    image: np.ndarray
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    n_users: int

    @property
    def n_items(self) -> int:
        """Number of items."""
        return self.topic.shape[0]


def _text(topic: int, attrs: np.ndarray, noun: int) -> str:
    context, nouns = TOPICS[topic]
    colour, material, style = (ATTRIBUTES[k][a] for k, a in enumerate(attrs))
    return f"A {style} {colour} {material} {nouns[noun]} for {context}."


def catalogue(
    n_items: int,
    n_users: int,
    n_per_user: int,
    latent_dim: int,
    image_dim: int,
    image_noise: float,
    sharpness: float,
    seed: int,
) -> Catalogue:
    """The catalogue, its users and their interactions (see the module docstring)."""
    if n_per_user < 10 or n_per_user > n_items:
        raise ValueError(f"n_per_user must be in [10, n_items], got {n_per_user}")
    rng = np.random.default_rng(seed)
    n_topics = len(TOPICS)
    topic = rng.integers(0, n_topics, n_items)
    attrs = np.stack([rng.integers(0, len(a), n_items) for a in ATTRIBUTES], axis=1)
    nouns = rng.integers(0, 3, n_items)
    texts = tuple(_text(int(t), a, int(k)) for t, a, k in zip(topic, attrs, nouns, strict=True))
    topic_vec = rng.normal(size=(n_topics, latent_dim))
    attr_vec = [rng.normal(size=(len(a), latent_dim)) for a in ATTRIBUTES]
    latent = topic_vec[topic] + 0.5 * sum(v[attrs[:, k]] for k, v in enumerate(attr_vec))
    sizes = [n_topics, *(len(a) for a in ATTRIBUTES)]
    onehot = np.zeros((n_items, sum(sizes)))
    offsets = np.cumsum([0, *sizes[:-1]])
    onehot[np.arange(n_items), topic] = 1
    for k in range(len(ATTRIBUTES)):
        onehot[np.arange(n_items), offsets[k + 1] + attrs[:, k]] = 1
    projection = rng.normal(size=(sum(sizes), image_dim)) / np.sqrt(4)
    image = onehot @ projection + image_noise * rng.normal(size=(n_items, image_dim))
    pairs = []
    for u in range(n_users):
        liked = rng.choice(n_topics, size=int(rng.integers(2, 4)), replace=False)
        weights = rng.dirichlet(np.ones(liked.size))
        taste = weights @ topic_vec[liked] + 0.5 * sum(
            v[rng.integers(0, v.shape[0])] for v in attr_vec
        )
        logits = sharpness * latent @ taste / np.sqrt(latent_dim)
        chosen = np.argsort(-(logits + rng.gumbel(size=n_items)))[:n_per_user]
        pairs.append(np.stack([np.full(n_per_user, u), rng.permutation(chosen)], axis=1))
    n_tr, n_va = int(0.8 * n_per_user), int(0.1 * n_per_user)
    return Catalogue(
        topic,
        attrs,
        texts,
        image.astype(np.float32),
        np.concatenate([p[:n_tr] for p in pairs]),
        np.concatenate([p[n_tr : n_tr + n_va] for p in pairs]),
        np.concatenate([p[n_tr + n_va :] for p in pairs]),
        n_users,
    )
