"""The capacity grid: variant names, width buckets and the useful-FLOP fraction.

A variant is one ``(hidden_dim, buffer_size, seed)`` combination, named ``h{H}-b{B}-s{S}``.
Variants whose widths are within ``bucket_ratio`` of each other share a bucket: their parameters
are allocated at the bucket's largest width and they train in one ``jax.vmap``, each masked down
to its own width. Buckets bound the FLOPs wasted on masked units.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from augnes_jax.world_model import flops_per_sample, num_params

VARIANT_RE = re.compile(r"^h(\d+)-b(\d+)-s(\d+)$")


@dataclass(frozen=True)
class Variant:
    """One capacity variant and where it sits in its bucket."""

    name: str
    hidden_dim: int
    buffer_size: int
    seed: int
    bucket: str  # "w{max_width}"
    index: int  # position on the bucket's variant axis
    max_width: int


@dataclass(frozen=True)
class Bucket:
    """Variants that share one vmapped call, allocated at ``max_width``."""

    name: str
    max_width: int
    variants: tuple[Variant, ...]

    @property
    def max_buffer_size(self) -> int:
        """Returns the largest ``buffer_size`` among the bucket's variants."""
        return max(v.buffer_size for v in self.variants)


def variant_name(hidden_dim: int, buffer_size: int, seed: int) -> str:
    """Returns the stable, readable name ``h{hidden_dim}-b{buffer_size}-s{seed}``."""
    return f"h{int(hidden_dim)}-b{int(buffer_size)}-s{int(seed)}"


def parse_variant_name(name: str) -> tuple[int, int, int] | None:
    """Returns ``(hidden_dim, buffer_size, seed)`` parsed from a variant name, or None."""
    m = VARIANT_RE.match(name)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def group_widths(widths: list[int] | tuple[int, ...], ratio: int) -> list[list[int]]:
    """Returns the sorted widths grouped so that each group's max is at most ``ratio`` x its min."""
    groups: list[list[int]] = []
    for w in sorted(set(widths)):
        if groups and w <= groups[-1][0] * ratio:
            groups[-1].append(w)
        else:
            groups.append([w])
    return groups


def build_buckets(
    hidden_dims, buffer_sizes, seeds, ratio: int, max_width_override: int | None = None
) -> list[Bucket]:
    """Returns the buckets of the grid ``hidden_dims x buffer_sizes x seeds``.

    Within a bucket variants are ordered by (hidden_dim, buffer_size, seed).
    ``max_width_override`` allocates every bucket at that width (the ``auto`` growth mode).
    """
    buckets = []
    for group in group_widths(hidden_dims, ratio):
        max_width = max_width_override or max(group)
        name = f"w{max_width}"
        items = []
        for h in group:
            for b in sorted(buffer_sizes):
                for s in sorted(seeds):
                    items.append(Variant(variant_name(h, b, s), h, b, s, name, len(items), max_width))
        buckets.append(Bucket(name, max_width, tuple(items)))
    if max_width_override is not None and len(buckets) > 1:
        merged = [v for b in buckets for v in b.variants]
        name = f"w{max_width_override}"
        merged = [Variant(v.name, v.hidden_dim, v.buffer_size, v.seed, name, i, max_width_override)
                  for i, v in enumerate(merged)]
        buckets = [Bucket(name, max_width_override, tuple(merged))]
    return buckets


def all_variants(buckets: list[Bucket]) -> list[Variant]:
    """Returns every variant of every bucket, in bucket order."""
    return [v for b in buckets for v in b.variants]


def useful_flop_fraction(buckets: list[Bucket], obs_dim: int, act_dim: int, num_layers: int,
                         extra: tuple[int, int] = (0, 0)) -> float:
    """Returns useful / executed training FLOPs: masked units execute but do no useful work.

    ``extra`` is what reward heads add to the input and output (:func:`augnes_jax.world_model.head_sizes`).
    """
    useful = sum(flops_per_sample(obs_dim, act_dim, v.hidden_dim, num_layers, *extra) for b in buckets for v in b.variants)
    executed = sum(flops_per_sample(obs_dim, act_dim, b.max_width, num_layers, *extra) * len(b.variants) for b in buckets)
    return useful / executed


def variant_num_params(v: Variant, obs_dim: int, act_dim: int, num_layers: int,
                       extra: tuple[int, int] = (0, 0)) -> int:
    """Returns the effective (dense) parameter count of a variant's model (``extra``: reward heads)."""
    return num_params(obs_dim, act_dim, v.hidden_dim, num_layers, *extra)
