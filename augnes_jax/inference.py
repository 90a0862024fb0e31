"""Loading one variant of a run's checkpoint as a dense world model for prediction (host shell).

:func:`load_world_model` restores a step's ``params`` and ``normalizer`` (see
:mod:`augnes_jax.checkpoint_read`), finds the variant through its ``meta`` record
(:mod:`augnes_jax.checkpoint_meta`), cuts its masked weights down to a dense network of the
variant's true width (:func:`augnes_jax.world_model.dense_params`) and returns a
:class:`Predictor` whose jitted functions run on the host's default device. Nothing but the
checkpoint's files is needed, so a model trained on an accelerator predicts on a CPU-only
machine in a fresh process.

A model with reward and termination heads (meta ``learn_reward``; a checkpoint that does not
record it is read from its arrays: a normalizer with ``reward_mean``) is rebuilt with them: its
goal is an input, so every prediction takes a goal id, and :meth:`Predictor.predict_reward` and
:meth:`Predictor.predict_terminal` give the heads' outputs.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from augnes_jax import checkpoint_meta
from augnes_jax import world_model as wmlib
from augnes_jax.checkpoint_meta import CheckpointError, VariantRecord
from augnes_jax.checkpoint_read import (
    META_ITEM,
    error_line,
    resolve_checkpoint_dir,
    restore_checkpoint,
    restore_newest_intact,
)

__all__ = ["ModelView", "Predictor", "load_world_model"]

log = logging.getLogger("augnes_jax.checkpoint")
_MODEL_ITEMS = ("params", "normalizer")


@struct.dataclass
class ModelView:
    """The parts of a world-model state that prediction needs (a pytree)."""

    params: Any
    normalizer: wmlib.Normalizer
    mask: jax.Array


@dataclass
class Predictor:
    """One variant's world model, loaded as a dense network of its true width.

    Attributes:
      variant: the variant's name.
      hidden_dim: its width; ``params`` are dense at this width.
      params: flax params ``{"params": {...}}`` as jax arrays.
      normalizer: the :class:`~augnes_jax.world_model.Normalizer` it was trained with.
      meta: the checkpoint's meta dict.
      step: the checkpoint step it came from.
      model: the rebuilt :class:`~augnes_jax.world_model.WorldModel` (``max_width == hidden_dim``).
        ``model.learn_reward`` says whether it has reward and termination heads.
    """

    variant: str
    hidden_dim: int
    params: Any
    normalizer: wmlib.Normalizer
    meta: dict[str, Any]
    step: int
    model: wmlib.WorldModel
    _view: ModelView = field(repr=False)
    _delta: Any = field(repr=False)
    _next: Any = field(repr=False)
    _step: Any = field(repr=False, default=None)

    @property
    def obs_dim(self) -> int:
        """Returns the observation size d."""
        return self.model.obs_dim

    @property
    def act_dim(self) -> int:
        """Returns the action feature size a."""
        return self.model.act_dim

    @property
    def env(self) -> str | None:
        """Returns the name of the environment the model was trained on, if the checkpoint says."""
        return checkpoint_meta.env_name(self.meta)

    @property
    def learn_reward(self) -> bool:
        """Returns whether the model has reward and termination heads (its goal is an input)."""
        return self.model.learn_reward

    @property
    def num_goals(self) -> int:
        """Returns the number of goals G of a model with heads (0 without)."""
        return self.model.num_goals if self.model.learn_reward else 0

    def _args(self, obs: Any, action: Any, goal_id: Any) -> tuple[Any, ...]:
        args = (self._view, jnp.asarray(obs, jnp.float32), jnp.asarray(action, jnp.float32))
        if not self.learn_reward:
            return args
        if goal_id is None:
            raise ValueError(f"variant {self.variant!r} has reward heads: its predictions need a goal_id")
        return (*args, jnp.asarray(goal_id, jnp.int32))

    def predict_delta(self, obs: Any, action: Any, goal_id: Any = None) -> jax.Array:
        """Returns Δobs ``[..., d]`` for ``obs[..., d]`` and ``action[..., a]`` (one or a batch).

        ``goal_id`` (an int, or ints ``[...]``) is required by a model with heads and ignored by
        one without.
        """
        return self._delta(*self._args(obs, action, goal_id))

    def predict_next(self, obs: Any, action: Any, goal_id: Any = None) -> jax.Array:
        """Returns the predicted next observation ``[..., d]`` (``goal_id`` as in predict_delta)."""
        return self._next(*self._args(obs, action, goal_id))

    def predict_step(self, obs: Any, action: Any, goal_id: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Returns ``(next_obs[..., d], reward[...], terminal_prob[...])`` of a model with heads.

        Raises:
          ValueError: the model has no reward heads.
        """
        if self._step is None:
            raise ValueError(f"variant {self.variant!r} has no reward or termination head")
        return self._step(*self._args(obs, action, goal_id))

    def predict_reward(self, obs: Any, action: Any, goal_id: Any) -> jax.Array:
        """Returns the predicted reward ``[...]`` in original units (a model with heads only)."""
        return self.predict_step(obs, action, goal_id)[1]

    def predict_terminal(self, obs: Any, action: Any, goal_id: Any) -> jax.Array:
        """Returns the predicted probability ``[...]`` that the step terminates (a model with heads only)."""
        return self.predict_step(obs, action, goal_id)[2]


def _restore_model_items(directory: Path, step: int | None) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """Returns ``(step, arrays, meta)`` with the model items of `step`, or of the newest intact step."""
    if step is not None:
        return restore_checkpoint(directory, step, items=_MODEL_ITEMS)
    step, arrays, meta, damaged = restore_newest_intact(directory, items=_MODEL_ITEMS)
    for bad, reason in damaged:
        log.warning("checkpoint %d skipped, using checkpoint %d: %s", bad, step, reason)
    return step, arrays, meta


def _variant_arrays(arrays: dict[str, Any], record: VariantRecord, where: Path) -> tuple[Any, wmlib.Normalizer]:
    """Returns the variant's masked params ``{"params": ...}`` (numpy) and its normalizer.

    The normalizer is a :class:`~augnes_jax.world_model.HeadNormalizer` when the saved one holds
    the reward's moments (a model with heads).
    """
    name, bucket, index = record.name, record.bucket, record.index
    for item in _MODEL_ITEMS:
        by_bucket = arrays[item]
        if not isinstance(by_bucket, dict) or bucket not in by_bucket:
            raise CheckpointError(f"{where}: variant {name!r} names bucket {bucket!r}, not in {item}")
    try:
        layers = jax.tree.map(lambda x: np.asarray(x)[index], arrays["params"][bucket]["params"])
        norm_tree = jax.tree.map(lambda x: np.asarray(x)[index], arrays["normalizer"][bucket])
        heads = "reward_mean" in norm_tree
        cls, names = (wmlib.HeadNormalizer, wmlib.HEAD_NORMALIZER_FIELDS) if heads else (
            wmlib.Normalizer, wmlib.NORMALIZER_FIELDS)
        normalizer = cls(**{k: jnp.asarray(norm_tree[k], jnp.float32) for k in names})
        width = wmlib.hidden_width({"params": layers})
    except (KeyError, IndexError, TypeError) as e:
        raise CheckpointError(
            f"{where}: variant {name!r} (bucket {bucket!r}, index {index!r}) "
            f"does not match the arrays ({error_line(e)})"
        ) from None
    if record.hidden_dim > width:
        raise CheckpointError(
            f"{where}: variant {name!r} hidden_dim {record.hidden_dim} > width {width}"
        )
    return {"params": layers}, normalizer


def _heads(meta: dict[str, Any], normalizer: wmlib.Normalizer, masked: Any, sizes: tuple[int, int, int],
           where: Path) -> tuple[bool, int]:
    """Returns ``(learn_reward, num_goals)``: as the meta records them, else as the arrays show them.

    Raises:
      CheckpointError: the meta and the saved normalizer disagree on whether there are heads.
    """
    saved = isinstance(normalizer, wmlib.HeadNormalizer)
    recorded = checkpoint_meta.model_heads(meta, where)
    if recorded is None:
        if not saved:
            return False, 0
        rows = np.shape(masked["params"]["hidden_0"]["kernel"])[0]
        return True, int(rows) - sizes[0] - sizes[1]
    if recorded[0] != saved:
        raise CheckpointError(f"{where}: meta field 'learn_reward' is {str(recorded[0]).lower()} but the saved "
                              f"normalizer {'has' if saved else 'has no'} reward moments")
    return recorded


def _dense_model(
    masked: Any, record: VariantRecord, sizes: tuple[int, int, int], heads: tuple[bool, int], where: Path
) -> tuple[Any, wmlib.WorldModel]:
    """Returns the variant's dense float32 params and a world model of exactly that width."""
    obs_dim, act_dim, num_layers = sizes[0], sizes[1], record.num_layers
    learn_reward, num_goals = heads
    h = record.hidden_dim
    try:
        dense = wmlib.dense_params(masked, h)
    except ValueError as e:  # a layer the network does not have
        raise CheckpointError(f"{where}: {e}") from None
    dense = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), dense)
    try:
        model = wmlib.make_world_model(obs_dim, act_dim, max_width=h, num_layers=num_layers, num_goals=num_goals,
                                       learn_reward=learn_reward)
    except ValueError as e:
        raise CheckpointError(f"{where}: {e}") from None
    expected = jax.eval_shape(model.init_params, jax.random.key(0), h)
    if jax.tree.map(lambda x: x.shape, expected) != jax.tree.map(lambda x: x.shape, dense):
        fit = "obs_dim/act_dim/num_layers" + ("/num_goals" if learn_reward else "")
        raise CheckpointError(f"{where}: params of variant {record.name!r} do not fit {fit}")
    return dense, model


def load_world_model(
    run_dir: str | os.PathLike, variant: str = "best", step: int | None = None
) -> Predictor:
    """Returns a :class:`Predictor` for one variant of a run's checkpoint.

    The model is rebuilt from the checkpoint's meta alone and its masked weights are sliced down
    to a dense network of the variant's true width.

    Args:
      run_dir: a run directory (with ``checkpoints/``) or a checkpoint directory.
      variant: a variant name, or ``"best"`` for the lowest ``val_mse`` in that step's meta.
      step: the checkpoint step; None means the newest one whose model restores intact (a
        damaged newer step is skipped with a warning).

    Raises:
      CheckpointError: missing, partial or corrupt checkpoint (one line naming the path).
      UnknownVariantError: no variant of that name.
    """
    directory = resolve_checkpoint_dir(run_dir)
    step, arrays, meta = _restore_model_items(directory, step)
    where = directory / str(step) / META_ITEM
    sizes = checkpoint_meta.model_sizes(meta, where)
    record = checkpoint_meta.variant_record(meta, variant, where)
    masked, normalizer = _variant_arrays(arrays, record, where)
    checkpoint_meta.check_mask(record, where)
    heads = _heads(meta, normalizer, masked, sizes, where)
    dense, model = _dense_model(masked, record, sizes, heads, where)
    h = record.hidden_dim
    view = ModelView(params=dense, normalizer=normalizer, mask=jnp.ones((h,), jnp.float32))
    return Predictor(
        variant=record.name,
        hidden_dim=h,
        params=dense,
        normalizer=normalizer,
        meta=meta,
        step=step,
        model=model,
        _view=view,
        _delta=jax.jit(model.predict_delta),
        _next=jax.jit(model.predict_next),
        _step=jax.jit(model.predict_step) if model.learn_reward else None,
    )
