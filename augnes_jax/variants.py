"""The capacity grid: variant names, (depth, width) buckets and the useful-FLOP fraction.

A variant is one ``(num_layers, hidden_dim, buffer_size, seed)`` combination, named
``h{H}-b{B}-s{S}``; a sweep over more than one depth (``variants.num_layers``) names its variants
``d{D}-h{H}-b{B}-s{S}`` instead, so a single-depth sweep keeps the names it always had. Variants
of one depth whose widths are within ``bucket_ratio`` of each other share a bucket: their
parameters are allocated at the bucket's largest width and they train in one ``jax.vmap``, each
masked down to its own width. Buckets bound the FLOPs wasted on masked units; a bucket never
mixes depths, since its network is built at one depth.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from augnes_jax.world_model import flops_per_sample, num_params

VARIANT_RE = re.compile(r"^(?:d(\d+)-)?h(\d+)-b(\d+)-s(\d+)$")


class VariantId(NamedTuple):
    """What a variant name says: its capacity and seed; ``num_layers`` is None where the name has no depth part."""

    hidden_dim: int
    buffer_size: int
    seed: int
    num_layers: int | None = None


@dataclass(frozen=True)
class Variant:
    """One capacity variant and where it sits in its bucket."""

    name: str
    hidden_dim: int
    buffer_size: int
    seed: int
    bucket: str  # "w{max_width}", or "d{num_layers}-w{max_width}" in a sweep over depths
    index: int  # position on the bucket's variant axis
    max_width: int
    num_layers: int  # hidden layers of the variant's world model

    @property
    def named_depth(self) -> int | None:
        """Returns the depth the name states (a sweep over depths), else None."""
        parsed = parse_variant_name(self.name)
        return None if parsed is None else parsed.num_layers

    def with_width(self, hidden_dim: int) -> Variant:
        """Returns the variant at width ``hidden_dim``, renamed; a name's depth part is kept."""
        return dataclasses.replace(self, name=variant_name(hidden_dim, self.buffer_size, self.seed, self.named_depth),
                                   hidden_dim=int(hidden_dim))


@dataclass(frozen=True)
class Bucket:
    """Variants of one depth that share one vmapped call, allocated at ``max_width``."""

    name: str
    max_width: int
    variants: tuple[Variant, ...]
    num_layers: int

    @property
    def max_buffer_size(self) -> int:
        """Returns the largest ``buffer_size`` among the bucket's variants."""
        return max(v.buffer_size for v in self.variants)


def variant_name(hidden_dim: int, buffer_size: int, seed: int, num_layers: int | None = None) -> str:
    """Returns the stable, readable name ``h{hidden_dim}-b{buffer_size}-s{seed}``.

    With ``num_layers`` (a sweep over more than one depth) the name is ``d{num_layers}-h...``.
    """
    name = f"h{int(hidden_dim)}-b{int(buffer_size)}-s{int(seed)}"
    return name if num_layers is None else f"d{int(num_layers)}-{name}"


def parse_variant_name(name: str) -> VariantId | None:
    """Returns the :class:`VariantId` a variant name states, or None when ``name`` is not one."""
    m = VARIANT_RE.match(name)
    if m is None:
        return None
    depth = None if m.group(1) is None else int(m.group(1))
    return VariantId(int(m.group(2)), int(m.group(3)), int(m.group(4)), depth)


def group_widths(widths: list[int] | tuple[int, ...], ratio: int) -> list[list[int]]:
    """Returns the sorted widths grouped so that each group's max is at most ``ratio`` x its min."""
    groups: list[list[int]] = []
    for w in sorted(set(widths)):
        if groups and w <= groups[-1][0] * ratio:
            groups[-1].append(w)
        else:
            groups.append([w])
    return groups


def _depth_buckets(hidden_dims, buffer_sizes, seeds, ratio: int, max_width_override: int | None,
                   depth: int, named: bool) -> list[Bucket]:
    """Returns the buckets of one depth; ``named``: names carry the depth (a sweep over depths)."""
    prefix = f"d{depth}-" if named else ""
    name_depth = depth if named else None
    buckets = []
    for group in group_widths(hidden_dims, ratio):
        max_width = max_width_override or max(group)
        name = f"{prefix}w{max_width}"
        items = []
        for h in group:
            for b in sorted(buffer_sizes):
                for s in sorted(seeds):
                    items.append(Variant(variant_name(h, b, s, name_depth), h, b, s, name, len(items), max_width, depth))
        buckets.append(Bucket(name, max_width, tuple(items), depth))
    if max_width_override is not None and len(buckets) > 1:
        name = f"{prefix}w{max_width_override}"
        merged = [dataclasses.replace(v, bucket=name, index=i, max_width=max_width_override)
                  for i, v in enumerate(v for b in buckets for v in b.variants)]
        buckets = [Bucket(name, max_width_override, tuple(merged), depth)]
    return buckets


def build_buckets(
    hidden_dims, buffer_sizes, seeds, ratio: int, max_width_override: int | None = None,
    depths: Sequence[int] = (2,),
) -> list[Bucket]:  # fmt: skip
    """Returns the buckets of the grid ``depths x hidden_dims x buffer_sizes x seeds``.

    Buckets come by depth, then width; within a bucket variants are ordered by (hidden_dim,
    buffer_size, seed). ``max_width_override`` allocates every bucket of a depth at that width
    (the ``auto`` growth mode). With more than one depth, variant and bucket names carry it.
    """
    depths = sorted({int(d) for d in depths})
    named = len(depths) > 1
    return [b for d in depths
            for b in _depth_buckets(hidden_dims, buffer_sizes, seeds, ratio, max_width_override, d, named)]


def all_variants(buckets: list[Bucket]) -> list[Variant]:
    """Returns every variant of every bucket, in bucket order."""
    return [v for b in buckets for v in b.variants]


def useful_flop_fraction(buckets: list[Bucket], obs_dim: int, act_dim: int,
                         extra: tuple[int, int] = (0, 0)) -> float:
    """Returns useful / executed training FLOPs: masked units execute but do no useful work.

    Each bucket counts at its own depth. ``extra`` is what reward heads add to the input and
    output (:func:`augnes_jax.world_model.head_sizes`).
    """
    useful = sum(flops_per_sample(obs_dim, act_dim, v.hidden_dim, v.num_layers, *extra) for b in buckets for v in b.variants)
    executed = sum(flops_per_sample(obs_dim, act_dim, b.max_width, b.num_layers, *extra) * len(b.variants) for b in buckets)
    return useful / executed


def variant_num_params(v: Variant, obs_dim: int, act_dim: int, extra: tuple[int, int] = (0, 0)) -> int:
    """Returns the effective (dense) parameter count of a variant's model at its own depth (``extra``: reward heads)."""
    return num_params(obs_dim, act_dim, v.hidden_dim, v.num_layers, *extra)
