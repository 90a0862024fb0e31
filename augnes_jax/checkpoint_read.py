"""Reading orbax checkpoints on the host: list steps, restore a step verified against its
checksums, or fall back to the newest intact step (host shell).

Everything is restored as numpy arrays and plain dicts/lists from the files alone (no pytree
template, no config object, no pickle), so a checkpoint written on an accelerator loads on a
CPU-only machine in a fresh process. Any missing, partial or unreadable checkpoint raises
:class:`~augnes_jax.checkpoint_meta.CheckpointError` whose message is one line naming the path.
Every restored item is checked against the checksums recorded in its ``meta``, so a checkpoint
whose bytes were damaged after the save is refused, not loaded. The layout is described in
:mod:`augnes_jax.checkpoint` (array items) and :mod:`augnes_jax.checkpoint_meta` (``meta``).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from augnes_jax import checkpoint_meta, checksum
from augnes_jax.checkpoint_meta import CheckpointError

__all__ = [
    "META_ITEM",
    "checkpoint_steps",
    "error_line",
    "quiet_absl",
    "resolve_checkpoint_dir",
    "restore_checkpoint",
    "restore_newest_intact",
]

META_ITEM = "meta"
_METADATA_FILE = "_CHECKPOINT_METADATA"


def error_line(e: BaseException) -> str:
    """Returns the cause of ``e`` in one short line: an operating-system error in words."""
    text = str(e).strip()
    code = re.search(r"os_error_code='?(\d+)", text)
    if code:  # tensorstore's "RESOURCE_EXHAUSTED: Error writing ... [os_error_code='28']"
        return os.strerror(int(code.group(1)))
    first = text.splitlines()[0] if text else ""
    if len(first) > 160:
        first = first[:157] + "..."
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def quiet_absl() -> None:
    """Raises absl's log level to ERROR: orbax logs routine progress through it at WARNING."""
    absl = logging.getLogger("absl")
    absl.setLevel(max(absl.getEffectiveLevel(), logging.ERROR))


def _read_only_manager(directory: Path) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        read_only=True, create=False, save_interval_steps=0, enable_async_checkpointing=False
    )
    return ocp.CheckpointManager(directory, options=options)


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


def checkpoint_steps(directory: str | os.PathLike) -> list[int]:
    """Returns the committed steps of a checkpoint directory, ascending.

    Raises:
      CheckpointError: the directory does not exist or cannot be read.
    """
    directory = Path(directory).absolute()
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no checkpoint directory")
    quiet_absl()
    try:
        with _read_only_manager(directory) as mngr:
            return sorted(int(s) for s in mngr.all_steps())
    except Exception as e:  # orbax raises many types for unreadable directories
        raise CheckpointError(f"{directory}: cannot list checkpoints ({error_line(e)})") from None


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
        raise CheckpointError(f"{meta_file}: unreadable ({error_line(e)})") from None
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


def _restore_meta(step_dir: Path) -> dict[str, Any]:
    """Returns the ``meta`` item of a step as a dict."""
    try:
        meta = ocp.Checkpointer(ocp.JsonCheckpointHandler()).restore(
            step_dir / META_ITEM, args=ocp.args.JsonRestore()
        )
    except Exception as e:
        raise CheckpointError(f"{step_dir / META_ITEM}: unreadable ({error_line(e)})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{step_dir / META_ITEM}: expected a JSON object")
    return meta


def _restore_item(checkpointer: ocp.PyTreeCheckpointer, path: Path, like: Any | None) -> Any:
    """Returns one array item as numpy arrays, in the structure of `like` when given."""
    try:
        if like is not None:
            template = jax.tree.map(np.asarray, like)
            args = ocp.args.PyTreeRestore(item=template, restore_args=_numpy_restore_args(template))
        else:
            tree = checkpointer.metadata(path).item_metadata.tree
            args = ocp.args.PyTreeRestore(restore_args=_numpy_restore_args(tree))
        return checkpointer.restore(path, args=args)
    except CheckpointError:
        raise
    except Exception as e:
        raise CheckpointError(f"{path}: unreadable ({error_line(e)})") from None


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
      CheckpointError: no such directory or step, an item is missing, a file is unreadable, or
        an item fails its recorded checksums.
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
    meta = _restore_meta(step_dir)
    arrays: dict[str, Any] = {}
    checkpointer = ocp.PyTreeCheckpointer()
    for name in wanted:
        arrays[name] = _restore_item(checkpointer, step_dir / name, like.get(name))
        _verify(step_dir / name, arrays[name], checkpoint_meta.recorded_checksums(meta, name))
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
