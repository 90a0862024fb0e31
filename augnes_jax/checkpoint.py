"""Orbax checkpoints of world-model variants, and loading one variant for inference (host shell).

Layout
  A run keeps its checkpoints in ``runs/<run>/checkpoints/``, an orbax ``CheckpointManager``
  directory with one sub-directory per step. Each step is a ``Composite`` of items:

  ``params``, ``opt_state``, ``normalizer`` (orbax ``StandardSave``)
      dicts keyed by bucket name ``"w{max_width}"``; every leaf has a leading variant axis
      ``[V_bucket, ...]``. Kernels are ``hidden_0: [in, W]``, ``hidden_1: [W, W]`` and
      ``out: [obs_dim, W]`` (transposed), W the bucket's max width. ``normalizer`` leaves are the :class:`~augnes_jax.world_model.Normalizer`
      fields (``obs_mean``, ``obs_std``, ``act_mean``, ``act_std``, ``delta_mean``,
      ``delta_std``).
  any other array item (``StandardSave``)
      optional extras needed to resume (buffers, keys, counters ...), named by the caller.
  ``meta`` (orbax ``JsonSave``)
      ``{"config": {...}, "env": str, "obs_dim": int, "act_dim": int, "num_layers": int,
      "variants": [{"name", "hidden_dim", "buffer_size", "seed", "bucket", "index",
      "max_width", "mask": [0/1 ...], "val_mse"}, ...]}``; ``index`` is the variant's position
      on its bucket's leading axis. A single world model (Stage 2 on its own) is one bucket with
      one variant. ``meta["checksums"]`` holds, per array item, the sorted checksums of its
      arrays (:mod:`augnes_jax.checksum`), computed on the device at save time.

  Step metrics ``{"val_mse": best val MSE of the step}`` drive retention: the latest
  ``keep_last`` steps and the best step (lowest ``val_mse``) are kept.

Everything is restored as numpy arrays and plain dicts/lists from the files alone (no pytree
template, no config object, no pickle), so a checkpoint written on an accelerator loads on a
CPU-only machine in a fresh process. Any missing, partial or unreadable checkpoint raises
:class:`CheckpointError` whose message is one line naming the path. Every restored item is
checked against its recorded checksums, so a checkpoint whose bytes were damaged after the save
is refused, not loaded. When no step is named, :func:`restore_newest_intact` and
:func:`load_world_model` fall back to the newest intact step, with one warning per damaged one.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import re
import shutil
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import struct

from augnes_jax import checksum, files
from augnes_jax import world_model as wmlib
from augnes_jax.errors import UserError

ARRAY_ITEMS = ("params", "opt_state", "normalizer")
META_ITEM = "meta"
_RESERVED = {META_ITEM, "metrics"}
_METADATA_FILE = "_CHECKPOINT_METADATA"
_NORMALIZER_FIELDS = ("obs_mean", "obs_std", "act_mean", "act_std", "delta_mean", "delta_std")


class CheckpointError(UserError, RuntimeError):
    """A missing, partial or unreadable checkpoint; ``str(err)`` is one line naming the path."""


class UnknownVariantError(CheckpointError, KeyError):
    """The requested variant is not in the checkpoint; the message lists the known ones."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _one_line(e: BaseException) -> str:
    """Returns the cause of ``e`` in one short line: an operating-system error in words."""
    text = str(e).strip()
    code = re.search(r"os_error_code='?(\d+)", text)
    if code:  # tensorstore's "RESOURCE_EXHAUSTED: Error writing ... [os_error_code='28']"
        return os.strerror(int(code.group(1)))
    first = text.splitlines()[0] if text else ""
    if len(first) > 160:
        first = first[:157] + "..."
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (a full disk, say); the run can be resumed once fixed."""


def _check_space(directory: Path, arrays: Mapping[str, Any], step: int) -> None:
    """Raises OSError(ENOSPC) before a save that cannot fit in the file system's free space.

    Orbax's background writers fail one by one on a full disk and leave tracebacks from their
    threads; refusing the save up front keeps the failure to one clear line.
    """
    need = sum(int(getattr(x, "nbytes", 0)) for x in jax.tree.leaves(arrays))
    try:
        free = shutil.disk_usage(directory).free
    except OSError:
        return
    if free < need + (1 << 18):  # the arrays, plus room for the metadata files
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (needs {need / 1e6:.1f} MB, "
                      f"{free / 1e6:.1f} MB free)", str(directory / str(step)))


def _val_metric(metrics: Any) -> float:
    """Returns the ranking value of a step's metrics: val_mse, or +inf when missing/non-finite."""
    try:
        value = float(metrics.get("val_mse"))
    except (AttributeError, TypeError, ValueError):
        return math.inf
    return value if math.isfinite(value) else math.inf


log = logging.getLogger("augnes_jax.checkpoint")


def _quiet_absl() -> None:
    # orbax logs routine progress through absl at WARNING; keep CLI output to our own lines.
    absl = logging.getLogger("absl")
    absl.setLevel(max(absl.getEffectiveLevel(), logging.ERROR))


def _read_only_manager(directory: Path) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        read_only=True, create=False, save_interval_steps=0, enable_async_checkpointing=False
    )
    return ocp.CheckpointManager(directory, options=options)


def checkpoint_steps(directory: str | os.PathLike) -> list[int]:
    """Returns the committed steps of a checkpoint directory, ascending.

    Raises:
      CheckpointError: the directory does not exist or cannot be read.
    """
    directory = Path(directory).absolute()
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no checkpoint directory")
    _quiet_absl()
    try:
        with _read_only_manager(directory) as mngr:
            return sorted(int(s) for s in mngr.all_steps())
    except Exception as e:  # orbax raises many types for unreadable directories
        raise CheckpointError(f"{directory}: cannot list checkpoints ({_one_line(e)})") from None


def _step_items(step_dir: Path) -> list[str]:
    """Returns the item names recorded for a step, checking that each item directory exists."""
    meta_file = step_dir / _METADATA_FILE
    try:
        recorded = json.loads(meta_file.read_text(encoding="utf-8"))
        handlers = recorded["item_handlers"]
        if not isinstance(handlers, dict):
            raise TypeError("item_handlers is not an object")
    except FileNotFoundError:
        raise CheckpointError(f"{meta_file}: missing (partial checkpoint)") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{meta_file}: unreadable ({_one_line(e)})") from None
    names = sorted(n for n in handlers if n != "metrics")
    for name in names:
        if not (step_dir / name).is_dir():
            raise CheckpointError(
                f"{step_dir / name}: item {name!r} is missing (partial checkpoint)"
            )
    if META_ITEM not in names:
        raise CheckpointError(f"{step_dir}: item {META_ITEM!r} is missing (partial checkpoint)")
    return names


def _numpy_restore_args(tree: Any) -> Any:
    return jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)


def restore_checkpoint(
    directory: str | os.PathLike,
    step: int | None = None,
    *,
    items: Sequence[str] | None = None,
    like: Mapping[str, Any] | None = None,
) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """Returns ``(step, arrays, meta)`` restored on the host as numpy arrays and plain containers.

    Args:
      directory: the orbax CheckpointManager directory.
      step: which step; None means the latest committed one.
      items: array items to restore (default: every item of the step except ``meta``).
      like: optional templates ``{item: pytree}``; those items are restored into the template's
        structure (e.g. an optax state with its NamedTuples) instead of nested dicts/lists.

    Raises:
      CheckpointError: no such directory or step, an item is missing, or a file is unreadable.
    """
    directory = Path(directory).absolute()
    steps = checkpoint_steps(directory)
    if not steps:
        raise CheckpointError(f"{directory}: no committed checkpoint")
    if step is None:
        step = steps[-1]
    if step not in steps:
        raise CheckpointError(f"{directory}: no checkpoint at step {step} (have {steps})")
    step_dir = directory / str(step)
    present = _step_items(step_dir)
    wanted = [n for n in present if n != META_ITEM] if items is None else list(items)
    for name in wanted:
        if name not in present:
            raise CheckpointError(
                f"{step_dir / name}: item {name!r} is missing (partial checkpoint)"
            )
    like = dict(like or {})

    try:
        meta = ocp.Checkpointer(ocp.JsonCheckpointHandler()).restore(
            step_dir / META_ITEM, args=ocp.args.JsonRestore()
        )
    except Exception as e:
        raise CheckpointError(f"{step_dir / META_ITEM}: unreadable ({_one_line(e)})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{step_dir / META_ITEM}: expected a JSON object")

    arrays: dict[str, Any] = {}
    checkpointer = ocp.PyTreeCheckpointer()
    for name in wanted:
        path = step_dir / name
        try:
            if name in like:
                template = jax.tree.map(np.asarray, like[name])
                args = ocp.args.PyTreeRestore(
                    item=template, restore_args=_numpy_restore_args(template)
                )
            else:
                tree = checkpointer.metadata(path).item_metadata.tree
                args = ocp.args.PyTreeRestore(restore_args=_numpy_restore_args(tree))
            arrays[name] = checkpointer.restore(path, args=args)
        except CheckpointError:
            raise
        except Exception as e:
            raise CheckpointError(f"{path}: unreadable ({_one_line(e)})") from None
        _verify(path, arrays[name], meta.get("checksums", {}).get(name))
    return step, arrays, meta


def _verify(path: Path, tree: Any, recorded: Any) -> None:
    """Raises CheckpointError when ``tree`` does not have the checksums recorded at save time."""
    if recorded is None:  # written before checksums were recorded
        return
    found = Counter(map(tuple, checksum.host_checksums(tree)))
    try:
        expected = Counter(tuple(int(v) for v in c) for c in recorded)
    except (TypeError, ValueError):
        raise CheckpointError(f"{path}: its recorded checksums are unreadable") from None
    if found != expected:
        bad = sum((expected - found).values()) or sum((found - expected).values())
        raise CheckpointError(f"{path}: damaged ({bad} of {sum(expected.values())} arrays fail their checksum)")


def restore_newest_intact(
    directory: str | os.PathLike,
    *,
    items: Sequence[str] | None = None,
    like: Mapping[str, Any] | None = None,
) -> tuple[int, dict[str, Any], dict[str, Any], list[tuple[int, str]]]:
    """Returns ``(step, arrays, meta, damaged)`` of the newest step that restores intact.

    ``damaged`` lists ``(step, reason)`` of every newer step that did not; the caller reports
    them.

    Raises:
      CheckpointError: there is no committed step, or none restores intact (the message names
        the newest step's problem).
    """
    directory = Path(directory).absolute()
    steps = checkpoint_steps(directory)
    if not steps:
        raise CheckpointError(f"{directory}: no committed checkpoint")
    damaged: list[tuple[int, str]] = []
    for step in reversed(steps):
        try:
            _, arrays, meta = restore_checkpoint(directory, step, items=items, like=like)
        except CheckpointError as e:
            damaged.append((step, str(e)))
            continue
        return step, arrays, meta, damaged
    raise CheckpointError(f"no intact checkpoint in {directory}: {damaged[0][1]}")


class SweepCheckpointer:
    """Saves and restores whole-sweep checkpoints with orbax (see the module docstring).

    Saves are asynchronous: :meth:`save` returns once the arrays are copied off the device, and
    :meth:`wait` blocks until the files are committed. Use it as a context manager or call
    :meth:`close`.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        keep_last: int = 2,
        keep_best: bool = True,
        async_save: bool = True,
    ):
        """Opens (creating if needed) the checkpoint directory.

        Args:
          directory: where the steps live (``runs/<run>/checkpoints``).
          keep_last: how many of the latest steps to keep.
          keep_best: also keep the step with the lowest ``val_mse`` metric.
          async_save: write files in a background thread.
        """
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}")
        _quiet_absl()
        self.directory = Path(directory).absolute()
        policies: list[Any] = [ocp.checkpoint_managers.LatestN(n=keep_last)]
        if keep_best:
            policies.append(
                ocp.checkpoint_managers.BestN(
                    get_metric_fn=_val_metric,
                    reverse=True,
                    n=1,
                    keep_checkpoints_without_metrics=False,
                )
            )
        options = ocp.CheckpointManagerOptions(
            # best_fn makes orbax persist each step's metrics (and answer best_step());
            # which steps survive is decided by the preservation policy alone.
            best_fn=_val_metric,
            best_mode="min",
            preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(policies),
            enable_async_checkpointing=async_save,
            create=True,
        )
        try:
            self._mngr = ocp.CheckpointManager(self.directory, options=options)
        except Exception as e:
            raise CheckpointError(f"{self.directory}: cannot open ({_one_line(e)})") from None

    def save(
        self,
        step: int,
        *,
        arrays: Mapping[str, Any],
        meta: Mapping[str, Any],
        metrics: Mapping[str, float] | None = None,
    ) -> bool:
        """Returns True once the save of `step` has started (the write may still be running).

        Args:
          step: the epoch number.
          arrays: ``{item: pytree}`` with at least the items of :data:`ARRAY_ITEMS` for a
            loadable world model; names must not be ``meta`` or ``metrics``. Items without
            any array are not written.
          meta: JSON-able dict (see the module docstring).
          metrics: e.g. ``{"val_mse": 0.01}``; non-finite values are stored as null.
        """
        bad = sorted(set(arrays) & _RESERVED)
        if bad:
            raise ValueError(f"array item names {bad} are reserved")
        # orbax refuses empty trees (e.g. the state of a stateless optimizer); nothing is lost.
        items = {
            name: ocp.args.StandardSave(tree)
            for name, tree in arrays.items()
            if jax.tree.leaves(tree)
        }
        sums = {name: checksum.device_checksums(tree) for name, tree in arrays.items() if name in items}
        items[META_ITEM] = ocp.args.JsonSave(files.to_jsonable({**meta, "checksums": sums}))
        clean = files.to_jsonable(dict(metrics)) if metrics is not None else None
        _check_space(self.directory, arrays, step)
        try:
            return bool(self._mngr.save(int(step), args=ocp.args.Composite(**items), metrics=clean))
        except Exception as e:
            raise CheckpointWriteError(
                f"{self.directory / str(step)}: cannot save ({_one_line(e)})"
            ) from None

    def wait(self) -> None:
        """Blocks until every started save is committed to disk."""
        try:
            self._mngr.wait_until_finished()
        except Exception as e:
            raise CheckpointWriteError(f"{self.directory}: save failed ({_one_line(e)})") from None

    def latest_step(self) -> int | None:
        """Returns the newest committed step, or None."""
        return self._mngr.latest_step()

    def best_step(self) -> int | None:
        """Returns the committed step with the lowest ``val_mse`` metric, or None."""
        return self._mngr.best_step()

    def all_steps(self) -> list[int]:
        """Returns the committed steps, ascending."""
        return sorted(int(s) for s in self._mngr.all_steps())

    def restore(
        self,
        step: int | None = None,
        *,
        items: Sequence[str] | None = None,
        like: Mapping[str, Any] | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Returns ``(arrays, meta)`` of `step` (latest if None) as numpy arrays and dicts.

        See :func:`restore_checkpoint` for `items` and `like`.
        """
        self.wait()
        _, arrays, meta = restore_checkpoint(self.directory, step, items=items, like=like)
        return arrays, meta

    def close(self) -> None:
        """Waits for pending saves and releases the manager."""
        try:
            self._mngr.close()
        except Exception as e:
            raise CheckpointWriteError(f"{self.directory}: save failed ({_one_line(e)})") from None

    def __enter__(self) -> SweepCheckpointer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def world_model_arrays(states: Mapping[str, wmlib.WorldModelState]) -> dict[str, dict[str, Any]]:
    """Returns the ``params``/``opt_state``/``normalizer`` items of vmapped states by bucket.

    Args:
      states: ``{"w{max_width}": WorldModelState}`` whose leaves carry a leading variant axis.
    """
    return {
        "params": {b: s.params for b, s in states.items()},
        "opt_state": {b: s.opt_state for b, s in states.items()},
        "normalizer": {b: s.normalizer for b, s in states.items()},
    }


# ----------------------------------------------------------------------------- inference


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

    @property
    def obs_dim(self) -> int:
        """Returns the observation size d."""
        return self.model.obs_dim

    @property
    def act_dim(self) -> int:
        """Returns the action feature size a."""
        return self.model.act_dim

    def predict_delta(self, obs: Any, action: Any) -> jax.Array:
        """Returns Δobs ``[..., d]`` for ``obs[..., d]`` and ``action[..., a]`` (one or a batch)."""
        return self._delta(
            self._view, jnp.asarray(obs, jnp.float32), jnp.asarray(action, jnp.float32)
        )

    def predict_next(self, obs: Any, action: Any) -> jax.Array:
        """Returns the predicted next observation ``[..., d]``."""
        return self._next(
            self._view, jnp.asarray(obs, jnp.float32), jnp.asarray(action, jnp.float32)
        )


def resolve_checkpoint_dir(run_dir: str | os.PathLike) -> Path:
    """Returns the checkpoint directory of a run directory (or `run_dir` itself if it is one)."""
    run_dir = Path(run_dir).absolute()
    if (run_dir / "checkpoints").is_dir():
        return run_dir / "checkpoints"
    if run_dir.is_dir() and any(p.name.isdigit() for p in run_dir.iterdir()):
        return run_dir
    if not run_dir.exists():
        raise CheckpointError(f"{run_dir}: no such run directory")
    raise CheckpointError(f"{run_dir}: no checkpoints directory")


def _meta_int(meta: Mapping[str, Any], key: str, where: Path) -> int:
    value = meta.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CheckpointError(
            f"{where}: meta field {key!r} must be a positive integer, got {value!r}"
        )
    return value


def select_variant(meta: Mapping[str, Any], variant: str, where: Path) -> dict[str, Any]:
    """Returns the meta record of `variant` (``"best"``: lowest finite ``val_mse``)."""
    records = meta.get("variants")
    if (
        not isinstance(records, list)
        or not records
        or not all(isinstance(r, dict) for r in records)
    ):
        raise CheckpointError(f"{where}: meta field 'variants' must be a non-empty list of objects")
    names = [str(r.get("name")) for r in records]
    if variant == "best":
        scored = [(_val_metric(r), i) for i, r in enumerate(records)]
        finite = [s for s in scored if math.isfinite(s[0])]
        if finite:
            return records[min(finite)[1]]
        if len(records) == 1:
            return records[0]
        raise CheckpointError(
            f"{where}: no variant has a finite val_mse; name one of {', '.join(names)}"
        )
    for record in records:
        if record.get("name") == variant:
            return record
    raise UnknownVariantError(f"unknown variant {variant!r}; the checkpoint has {', '.join(names)}")


def _dense_params(layers: Mapping[str, Any], hidden_dim: int, where: Path) -> dict[str, Any]:
    """Returns the params of a dense width-`hidden_dim` network cut from masked ones."""
    h = hidden_dim
    out: dict[str, Any] = {}
    for name, layer in layers.items():
        kernel, bias = np.asarray(layer["kernel"]), np.asarray(layer["bias"])
        if name == "hidden_0":
            out[name] = {"kernel": kernel[:, :h], "bias": bias[:h]}
        elif name == "hidden_1":
            out[name] = {"kernel": kernel[:h, :h], "bias": bias[:h]}
        elif name == "out":  # stored [obs_dim, width]
            out[name] = {"kernel": kernel[:, :h], "bias": bias}
        else:
            raise CheckpointError(f"{where}: unexpected layer {name!r} in params")
    return {"params": out}


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
    if step is None:  # the newest step whose model restores intact
        step, arrays, meta, damaged = restore_newest_intact(directory, items=("params", "normalizer"))
        for bad, reason in damaged:
            log.warning("checkpoint %d skipped, using checkpoint %d: %s", bad, step, reason)
    else:
        step, arrays, meta = restore_checkpoint(directory, step, items=("params", "normalizer"))
    where = directory / str(step) / META_ITEM
    obs_dim = _meta_int(meta, "obs_dim", where)
    act_dim = _meta_int(meta, "act_dim", where)
    num_layers = _meta_int(meta, "num_layers", where)
    record = select_variant(meta, variant, where)
    name = str(record.get("name"))
    hidden_dim = _meta_int(record, "hidden_dim", where)
    bucket = record.get("bucket")
    index = record.get("index")
    params_by_bucket, norm_by_bucket = arrays["params"], arrays["normalizer"]
    if not isinstance(params_by_bucket, dict) or bucket not in params_by_bucket:
        raise CheckpointError(f"{where}: variant {name!r} names bucket {bucket!r}, not in params")
    if not isinstance(norm_by_bucket, dict) or bucket not in norm_by_bucket:
        raise CheckpointError(
            f"{where}: variant {name!r} names bucket {bucket!r}, not in normalizer"
        )
    try:
        layers = jax.tree.map(lambda x: np.asarray(x)[index], params_by_bucket[bucket]["params"])
        norm_tree = jax.tree.map(lambda x: np.asarray(x)[index], norm_by_bucket[bucket])
        normalizer = wmlib.Normalizer(
            **{k: jnp.asarray(norm_tree[k], jnp.float32) for k in _NORMALIZER_FIELDS}
        )
    except (KeyError, IndexError, TypeError) as e:
        raise CheckpointError(
            f"{where}: variant {name!r} (bucket {bucket!r}, index {index!r}) "
            f"does not match the arrays ({_one_line(e)})"
        ) from None
    max_width = np.asarray(layers["hidden_0"]["kernel"]).shape[1]
    mask = record.get("mask")
    if hidden_dim > max_width:
        raise CheckpointError(
            f"{where}: variant {name!r} hidden_dim {hidden_dim} > width {max_width}"
        )
    if mask is not None and list(mask) != [1] * hidden_dim + [0] * (len(mask) - hidden_dim):
        raise CheckpointError(f"{where}: variant {name!r} mask is not {hidden_dim} leading ones")
    dense = jax.tree.map(
        lambda x: jnp.asarray(x, jnp.float32), _dense_params(layers, hidden_dim, where)
    )
    model = wmlib.make_world_model(obs_dim, act_dim, max_width=hidden_dim, num_layers=num_layers)
    expected = jax.eval_shape(model.init_params, jax.random.key(0), hidden_dim)
    if jax.tree.map(lambda x: x.shape, expected) != jax.tree.map(lambda x: x.shape, dense):
        raise CheckpointError(
            f"{where}: params of variant {name!r} do not fit obs_dim/act_dim/num_layers"
        )
    view = ModelView(params=dense, normalizer=normalizer, mask=jnp.ones((hidden_dim,), jnp.float32))
    return Predictor(
        variant=name,
        hidden_dim=hidden_dim,
        params=dense,
        normalizer=normalizer,
        meta=meta,
        step=step,
        model=model,
        _view=view,
        _delta=jax.jit(model.predict_delta),
        _next=jax.jit(model.predict_next),
    )
