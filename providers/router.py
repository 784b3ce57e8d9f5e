"""Order a model's deployments: by priority, and by weighted chance within a priority."""

from __future__ import annotations

import random
from collections.abc import Sequence
from itertools import groupby

from providers.types import Target


def attempt_order(targets: Sequence[Target], rng: random.Random | None = None) -> list[Target]:
    draw = (rng or random.Random()).random if rng else random.random
    ordered: list[Target] = []
    for _, group in groupby(sorted(targets, key=lambda t: t.priority), key=lambda t: t.priority):
        # Weighted shuffle (Efraimidis-Spirakis): each deployment leads in proportion to its weight.
        ordered.extend(sorted(group, key=lambda t: draw() ** (1.0 / max(t.weight, 1)), reverse=True))
    return ordered
