"""The data-only Stage-2 capacity sweep: world models of every width fitted to a transitions file.

With ``data.path`` set, every ``hidden_dim x buffer_size x seed`` variant of the config trains on
the file's training rows, one ``jax.vmap`` per width bucket, with the same world model, ring
buffer, keys and evaluation as the environment-driven sweep:

- The file (``.npz`` or ``.parquet``) is read from disk ``data.chunk_rows`` rows at a time, twice
  (:mod:`augnes_jax.transitions_stream`): the host never holds it whole.
- The held-out split takes whole episodes when the file has episode ids (else rows), seeded by
  ``seed``. Each variant's ring buffer is filled once with the training rows in file order, so a
  variant keeps the ``buffer_size`` most recent of them: only the largest buffer_size's worth of
  training rows is kept from the file.
- Every epoch trains ``world_model.train_steps_per_epoch`` minibatch steps, then measures the
  one-step error on the held-out rows (validation MSE, per dimension, per goal) and the open-loop
  k-step error on held-out sequences that are contiguous within an episode; beyond
  ``data.max_eval_rows`` held-out rows (``max_eval_rows // K`` sequences) a seeded uniform sample
  of them. ``decision.json``'s ``data`` block says how many of each were used.
- With ``world_model.reward=learned`` (the file must have ``reward``; ``terminated`` is optional)
  the models also learn goal-conditioned reward and termination heads, whose held-out errors
  (``reward_mse``, ``termination_bce``, ``termination_accuracy``) join the statistics.
- The run directory gets ``config.yaml``, ``world_model_stats.json``, one TensorBoard run per
  variant (``tb/<variant>/``, tags ``world_model/*``) and ``decision.json``, which decides on
  model error: the smallest width whose gain in validation MSE (mean over buffer sizes and
  seeds, relative by default) to the next width is below ``meta.epsilon`` is kept; when every
  width still gains that much, the answer is to expand.

The file is read and checked, and the run's memory estimated (and refused above 0.8 of what is
available), before the run directory is created: bad data writes nothing.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from augnes_jax import buffer as rb
from augnes_jax import files, reporting, run_lock
from augnes_jax.clock import utc_now
from augnes_jax.config import Config, to_yaml
from augnes_jax.epoch import init_bucket_buffers, init_bucket_states
from augnes_jax.errors import ConfigError
from augnes_jax.memory_check import check_data_memory, estimate_data_bytes
from augnes_jax.sampling import INIT, TRAIN, variant_keys
from augnes_jax.sweep_setup import check_writable, resolve_run_dir, sweep_buckets
from augnes_jax.tensorboard_io import RunWriter
from augnes_jax.transitions import Transitions
from augnes_jax.transitions_stream import plan_split, read_kept, scan_file
from augnes_jax.variants import Bucket, variant_num_params
from augnes_jax.world_model import head_sizes, jitted_train_epoch, make_world_model
from augnes_jax.world_model_eval import k_step_errors, one_step_errors
from augnes_jax.world_model_stats import WorldModelStats

__all__ = ["BucketFit", "buffer_items", "DataRun", "DecisionOnModelError", "decide_on_model_error", "make_fits", "prepare", "run",
           "run_cli"]

log = logging.getLogger(__name__)
SCHEMA = 1


@dataclasses.dataclass(frozen=True)
class DataRun:
    """A checked data-only sweep: its config and what it keeps of the file.

    ``train`` holds the last ``min(max buffer_size, train_rows)`` training rows (all a ring buffer
    keeps), ``held_out`` the held-out rows evaluated on (``eval_rows`` of ``held_out_rows``).
    """

    cfg: Config
    train: Transitions
    held_out: Transitions
    num_goals: int
    obs_seq: np.ndarray  # [M, K + 1, d] held-out sequences, K = max(world_model.k_steps)
    action_seq: np.ndarray  # [M, K, a]
    goal_seq: np.ndarray  # [M] each sequence's goal (its first row's)
    split: str  # "episode" or "row"
    rows: int  # rows kept from the file
    train_rows: int  # training rows in the file (the buffers are filled with all of them, in order)
    held_out_rows: int  # held-out rows in the file
    windows: int  # held-out k-step sequences in the file
    needs_bytes: int  # the estimated memory the run needs

    @property
    def eval_rows(self) -> int:
        """Returns the held-out rows evaluated on."""
        return self.held_out.num_rows


def prepare(cfg: Config) -> DataRun:
    """Returns the checked data run of ``cfg`` (reads ``data.path`` twice, in chunks; writes nothing).

    Between the passes it estimates the memory the run needs, logs it and refuses the run when
    that is more than 0.8 of what is available.

    Raises:
      DataError: the file cannot be used; ConfigError: the config does not fit the data;
      SweepError: the run would not fit in memory.
    """
    d = cfg.data
    if d.path is None:
        raise ConfigError("data.path", "a data-only sweep needs a transitions file")
    scan = scan_file(d.path, chunk_rows=d.chunk_rows, drop_nonfinite=d.drop_nonfinite)
    if cfg.world_model.reward == "learned" and "reward" not in scan.names:
        raise ConfigError("world_model.reward", f"learned reward heads need a 'reward' array in {d.path}")
    plan = plan_split(scan, d.holdout_fraction, cfg.seed)
    k_max = max(cfg.world_model.k_steps)
    keep = min(max(cfg.variants.buffer_sizes), plan.train_rows)
    eval_rows = min(d.max_eval_rows, plan.held_out_rows)
    windows = min(max(1, d.max_eval_rows // k_max), plan.held_out_rows // k_max)  # at most
    parts = estimate_data_bytes(cfg, sweep_buckets(cfg), scan,
                                train_rows=keep, eval_rows=eval_rows, windows=windows)
    need, have = check_data_memory(cfg, parts)
    log.info("data run needs about %.2f GiB%s", need / 2**30,
             "" if have is None else f" of {have / 2**30:.2f} GiB available")
    kept = read_kept(scan, plan, keep_train_rows=keep, max_eval_rows=d.max_eval_rows, window_length=k_max,
                     chunk_rows=d.chunk_rows, seed=cfg.seed)
    return DataRun(cfg=cfg, train=kept.train, held_out=kept.held_out, num_goals=scan.num_goals,
                   obs_seq=kept.obs_seq, action_seq=kept.action_seq, goal_seq=kept.goal_seq, split=plan.split,
                   rows=scan.rows, train_rows=plan.train_rows, held_out_rows=plan.held_out_rows,
                   windows=kept.windows, needs_bytes=need)


def buffer_items(t: Transitions) -> dict[str, jax.Array]:
    """Returns the buffer items of `t`: the sweep's item layout, with reward and terminated zero when absent."""
    n = t.num_rows
    reward = np.zeros(n, np.float32) if t.reward is None else t.reward
    terminated = np.zeros(n, np.bool_) if t.terminated is None else t.terminated
    return {"obs": jnp.asarray(t.obs), "action": jnp.asarray(t.action), "next_obs": jnp.asarray(t.next_obs),
            "goal_id": jnp.asarray(t.goal_id), "reward": jnp.asarray(reward, jnp.float32),
            "terminated": jnp.asarray(terminated, jnp.bool_)}


def _bucket_arrays(b: Bucket) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    seeds = np.asarray([v.seed for v in b.variants], np.int64)
    hidden = np.asarray([v.hidden_dim for v in b.variants], np.int32)
    capacity = np.asarray([v.buffer_size for v in b.variants], np.int32)
    return seeds, hidden, capacity


class BucketFit:
    """One bucket's world models, filled buffers and jitted train / evaluate functions.

    ``states`` and ``buffers`` carry the bucket's variant axis ``[V]`` in ``bucket.variants``
    order; :meth:`epoch` trains them in place.
    """

    def __init__(self, b: Bucket, data: DataRun):
        cfg, wmc = data.cfg, data.cfg.world_model
        self.bucket = b
        heads = wmc.reward == "learned"  # a file has no env to state its reward: only on request
        self.wm = make_world_model(data.train.obs.shape[1], data.train.action.shape[1], b.max_width,
                                   b.num_layers, wmc.learning_rate, wmc.weight_decay, wmc.grad_clip,
                                   wmc.batch_size, num_goals=data.num_goals, learn_reward=heads)
        self.seeds, hidden, capacity = _bucket_arrays(b)
        self.states = init_bucket_states(self.wm, variant_keys(cfg.seed, self.seeds, INIT, 0), jnp.asarray(hidden))
        items = buffer_items(data.train)
        item = jax.tree.map(lambda x: x[0], items)
        buffers = init_bucket_buffers(item, b.max_buffer_size, jnp.asarray(capacity))
        # the kept rows are the last of data.train_rows, added after the rows left unread
        self.buffers = jax.jit(jax.vmap(rb.add_after, in_axes=(0, None, None)))(
            buffers, data.train_rows - data.train.num_rows, items)
        self.train = jitted_train_epoch(self.wm, wmc.train_steps_per_epoch)
        held, ks, num_goals = data.held_out, tuple(sorted(wmc.k_steps)), data.num_goals
        val = tuple(jnp.asarray(x) for x in (held.obs, held.action, held.next_obs, held.goal_id))
        seqs = (jnp.asarray(data.obs_seq), jnp.asarray(data.action_seq)) if len(data.obs_seq) else None
        head_kw = {}
        if heads:
            terminated = held.terminated if held.terminated is not None else np.zeros(held.num_rows, bool)
            head_kw = {"reward": jnp.asarray(held.reward, jnp.float32), "terminated": jnp.asarray(terminated)}
        seq_goal = jnp.asarray(data.goal_seq, jnp.int32) if heads else None

        def evaluate_one(state):
            one = one_step_errors(self.wm, state, *val, num_goals=num_goals, **head_kw)
            k = k_step_errors(self.wm, state, *seqs, ks, goal_id=seq_goal) if seqs is not None else {}
            return {**one, "k_step_mse": k}

        self.evaluate = jax.jit(jax.vmap(evaluate_one))

    def epoch(self, cfg: Config, epoch: int) -> dict[str, Any]:
        """Returns this epoch's metrics ``[V]`` after training every variant once."""
        keys = variant_keys(cfg.seed, self.seeds, TRAIN, epoch)
        self.states, metrics = self.train(self.states, self.buffers, keys)
        return jax.device_get({**metrics, **self.evaluate(self.states)})


def make_fits(data: DataRun) -> list[BucketFit]:
    """Returns one freshly initialised :class:`BucketFit` per width bucket of the config."""
    return [BucketFit(b, data) for b in sweep_buckets(data.cfg)]


@dataclasses.dataclass(frozen=True)
class DecisionOnModelError:
    """The capacity decision of a data-only sweep (``decision.json``)."""

    decision: str  # "keep" or "expand"
    recommended_hidden_dim: int
    widths: list[dict[str, Any]]
    gains: list[dict[str, Any]]
    epsilon: float
    relative: bool
    epoch: int

    def to_json(self, data: DataRun) -> dict[str, Any]:
        """Returns the ``decision.json`` document."""
        kind = "relative" if self.relative else "absolute"
        if self.decision == "keep":
            reason = (f"hidden_dim {self.recommended_hidden_dim}: the {kind} gain in validation MSE to the "
                      f"next width is below epsilon {self.epsilon:g}")
        else:
            reason = (f"every width's {kind} gain in validation MSE to the next is at least epsilon "
                      f"{self.epsilon:g}: the largest, {self.recommended_hidden_dim}, may still be too small")
        return {
            "schema": SCHEMA, "generated_at": utc_now(timespec="seconds"), "decided_on": "model_error",
            "metric": "val_mse", "epoch": self.epoch, "decision": self.decision,
            "recommended": {"hidden_dim": self.recommended_hidden_dim}, "epsilon": self.epsilon,
            "relative": self.relative, "gains": self.gains, "capacities": self.widths,
            "data": {"path": str(data.cfg.data.path), "rows": data.rows, "train_rows": data.train_rows,
                     "buffer_rows": data.train.num_rows, "held_out_rows": data.held_out_rows,
                     "eval_rows": data.eval_rows, "split": data.split, "k_step_sequences": int(len(data.obs_seq)),
                     "held_out_k_step_sequences": data.windows, "needs_bytes": data.needs_bytes},
            "reason": f"decided on model error: {reason}",
        }


def decide_on_model_error(val_mse: dict[int, list[float]], *, epsilon: float, relative: bool,
                          epoch: int) -> DecisionOnModelError:
    """Returns keep at the smallest width whose val-MSE gain to the next width is below `epsilon`.

    `val_mse` maps each hidden_dim to its variants' validation MSEs (averaged here). The gain of
    width ``w`` to the next ``w'`` is ``mse(w) - mse(w')``, divided by ``mse(w)`` when `relative`.
    A single width is kept. Every gain at or above `epsilon`: expand beyond the largest width.
    """
    widths = sorted(val_mse)
    means = {w: float(np.mean(val_mse[w])) for w in widths}
    gains = []
    for small, large in zip(widths, widths[1:], strict=False):
        gain = means[small] - means[large]
        if relative:
            gain = gain / means[small] if means[small] > 0 else 0.0
        gains.append({"from": {"hidden_dim": small}, "to": {"hidden_dim": large}, "gain": gain,
                      "below_epsilon": bool(gain < epsilon)})
    keep = next((g["from"]["hidden_dim"] for g in gains if g["below_epsilon"]), None)
    if keep is None and len(widths) == 1:
        keep = widths[0]
    table = [{"hidden_dim": w, "val_mse": means[w], "variants": len(val_mse[w])} for w in widths]
    return DecisionOnModelError(decision="keep" if keep is not None else "expand",
                                recommended_hidden_dim=keep if keep is not None else widths[-1],
                                widths=table, gains=gains, epsilon=float(epsilon), relative=relative, epoch=epoch)


def run(data: DataRun, run_dir: str | Path) -> dict[str, Any]:
    """Runs the sweep into `run_dir` (which exists and is held); returns the decision document."""
    cfg, run_dir = data.cfg, Path(run_dir)
    files.write_text_atomic(run_dir / "config.yaml", to_yaml(cfg))
    obs_dim, act_dim = data.train.obs.shape[1], data.train.action.shape[1]
    stats = WorldModelStats(cfg.world_model.epsilon)
    extra = head_sizes(data.num_goals, cfg.world_model.reward == "learned")
    trainers = make_fits(data)
    writers = {var.name: RunWriter(run_dir / "tb" / var.name) for t in trainers for var in t.bucket.variants}
    try:
        for epoch in range(cfg.epochs):
            for t in trainers:
                metrics = t.epoch(cfg, epoch)
                metas = [{"hidden_dim": var.hidden_dim, "buffer_size": var.buffer_size, "seed": var.seed,
                          "num_params": variant_num_params(var, obs_dim, act_dim, extra)}
                         for var in t.bucket.variants]
                names = [var.name for var in t.bucket.variants]
                stats.record_variants(names, epoch, metrics, metas)
                for name in names:
                    stats.write_tb(writers[name], name, epoch)
            stats.write(run_dir / "world_model_stats.json")
            log.info("epoch %d/%d: trained %d variants on %d rows", epoch + 1, cfg.epochs, len(writers),
                     data.train_rows)
    finally:
        for w in writers.values():
            w.close()
    last = cfg.epochs - 1
    by_width: dict[int, list[float]] = {}
    for name in writers:
        entry = stats.latest(name)
        by_width.setdefault(stats.variants[name]["hidden_dim"], []).append(entry["val_mse"])
    decision = decide_on_model_error(by_width, epsilon=cfg.meta.epsilon, relative=cfg.data.relative, epoch=last)
    doc = decision.to_json(data)
    files.write_json_atomic(run_dir / "decision.json", doc)
    reporting.render_dashboard(run_dir, None, cfg.meta.epsilon)  # plots/, as an env sweep leaves them
    return doc


def run_cli(cfg: Config, run_dir_arg: str | None, *, prog: str, resume: bool) -> dict[str, Any]:
    """Checks the data, then creates and holds the run directory and runs the sweep in it."""
    if resume:
        raise ConfigError("--resume", "a sweep on data.path does not resume; start a new run")
    data = prepare(cfg)
    run_dir = resolve_run_dir(cfg, run_dir_arg)
    created = not run_dir.exists()
    if (run_dir / "config.yaml").exists():
        raise ConfigError("--run-dir", f"{run_dir} already holds a run; choose another --run-dir")
    check_writable(run_dir)
    lock = run_lock.acquire(run_dir, command=prog)
    try:
        return run(data, run_dir)
    finally:
        lock.release(remove_dir=created)
