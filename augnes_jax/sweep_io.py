"""Everything a sweep writes between its jitted calls: the run directory's artifacts.

:class:`SweepWriter` owns the run directory of one :class:`augnes_jax.sweep.Sweep`: the
resolved ``config.yaml`` (written first), ``judgments.jsonl`` (append-only), the per-variant
and capacity TensorBoard runs, ``strategy_stats.json`` and ``world_model_stats.json`` (atomic),
orbax checkpoints, the MetaJudgmentController's ``decision.json`` and alerts, the progress bar
and the final summary table. It also restores all of that on ``--resume``.

Multi-process runs: every process keeps the same host state (ledger, statistics, variants), but
only process 0 (``SweepWriter.primary``) writes files: config, TensorBoard, JSON,
``judgments.jsonl``, decision and alerts. Every process takes part in the orbax saves, which
orbax coordinates. The controller's decision is broadcast from process 0.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from augnes_jax import files, regret
from augnes_jax.checkpoint import SweepCheckpointer
from augnes_jax.config import to_dict, to_yaml
from augnes_jax.judgments import JudgmentWriter, make_judgments, read_judgments
from augnes_jax.stats import build_strategy_stats, write_strategy_stats
from augnes_jax.summaries import RunWriter, regret_layout, write_regret_summaries
from augnes_jax.sweep import host_copy
from augnes_jax.variants import Variant, variant_name, variant_num_params
from augnes_jax.world_model_stats import WorldModelStats

if TYPE_CHECKING:
    from augnes_jax.sweep import Sweep

log = logging.getLogger("augnes_jax.sweep")


def _finite(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


class SweepWriter:
    """Writes (and on resume restores) the artifacts of one sweep's run directory."""

    def __init__(self, sweep: Sweep):
        self.sweep = sweep
        self.cfg = sweep.cfg
        self.run_dir = sweep.run_dir
        self.judgments_path = self.run_dir / "judgments.jsonl"
        self.stats_path = self.run_dir / "strategy_stats.json"
        self.wm_stats_path = self.run_dir / "world_model_stats.json"
        self.tb_root = self.run_dir / "tb"
        self.writers: dict[str, RunWriter] = {}
        self.ledger: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.collection: dict[str, list[list[float]]] = {}
        self.epoch_times: list[float] = []
        self.checkpoint_times: list[float] = []
        self.last_decision: Any = None
        self.controller = None
        self._purge_step: int | None = None
        self.checkpointer: SweepCheckpointer | None = None
        self.wm_stats = WorldModelStats(epsilon=self.cfg.world_model.epsilon)
        self._judgment_writer: JudgmentWriter | None = None
        # multi-process: process 0 alone writes files (see the module docstring)
        self.primary = jax.process_index() == 0

    # ------------------------------------------------------------------ start / resume
    def prepare(self, *, resume: bool, allow_changed: tuple[str, ...]) -> int:
        """Returns the first epoch to run, after writing config.yaml or restoring host state."""
        del allow_changed  # checked by the CLI before the sweep starts
        ckpt_dir = self.run_dir / "checkpoints"
        start = 0
        if resume:
            if self.cfg.checkpoint.enabled:
                self.checkpointer = SweepCheckpointer(ckpt_dir, keep_last=self.cfg.checkpoint.keep_last,
                                                      keep_best=self.cfg.checkpoint.keep_best)
                last = self.checkpointer.latest_step()
                start = 0 if last is None else last + 1
            self._truncate_to(start)
            self._purge_step = start
        else:
            if self.primary:
                files.write_text_atomic(self.run_dir / "config.yaml", to_yaml(self.cfg))
            if self.cfg.checkpoint.enabled:
                self.checkpointer = SweepCheckpointer(ckpt_dir, keep_last=self.cfg.checkpoint.keep_last,
                                                      keep_best=self.cfg.checkpoint.keep_best)
        if self.primary:
            self._judgment_writer = JudgmentWriter(self.judgments_path)
        self._open_writers()
        return start

    def _truncate_to(self, start: int) -> None:
        """Drops every record of epochs >= ``start`` (work after the last checkpoint)."""
        if self.judgments_path.exists():
            lines = []
            with open(self.judgments_path, "rb") as f:
                data = f.read()
            import json

            for raw in data.split(b"\n"):
                if not raw.strip():
                    continue
                try:
                    rec = json.loads(raw)
                except ValueError:
                    continue  # a torn line from the crash
                if int(rec.get("epoch", 0)) < start:
                    lines.append(raw.decode("utf-8"))
            if self.primary:
                files.write_text_atomic(self.judgments_path, "".join(x + "\n" for x in lines))
            if lines:
                self._rebuild_ledger(start)
        if self.wm_stats_path.exists():
            self.wm_stats = WorldModelStats.from_file(self.wm_stats_path)
            self.wm_stats.truncate(start)
        meta_path = self.run_dir / "sweep_state.json"
        if meta_path.exists():
            state = files.read_json(meta_path)
            self.sweep.diverged = {d for d, e in state.get("diverged", {}).items() if e < start}
            self.collection = {k: v[:start] for k, v in state.get("collection", {}).items()}
            self.sweep.growth = [g for g in state.get("growth", []) if g["epoch"] < start]

    def _rebuild_ledger(self, start: int) -> None:
        # filtered again: another process may read the file before process 0 has truncated it
        j = read_judgments(self.judgments_path)
        g = self.sweep.num_goals
        for name in sorted(set(j.variant)):
            sel = np.asarray([v == name for v in j.variant]) & (np.asarray(j.epoch) < start)
            goals = j.goal_id[sel].astype(np.int64)
            self.ledger[name] = (np.bincount(goals, minlength=g).astype(np.float64),
                                 np.bincount(goals, weights=j.regret[sel], minlength=g))

    def restore_device_state(self, step: int) -> None:
        """Loads every bucket's model and buffer state saved at ``step``."""
        arrays, meta = self.checkpointer.restore(step)
        saved = arrays["resume"]
        for r in self.sweep.runs:
            tree = (r.states, r.buffers)
            leaves, treedef = jax.tree.flatten(tree)
            item = saved[r.bucket.name]
            # rows past the bucket's variants are padding: re-pad for this run's device count
            n = len(r.bucket.variants)
            restored = [jnp.asarray(r.pad(np.asarray(item[f"leaf_{i:04d}"])[:n]), dtype=leaf.dtype)
                        for i, leaf in enumerate(leaves)]
            for a, b in zip(restored, leaves, strict=True):
                if a.shape != b.shape:
                    raise RuntimeError(f"checkpoint {step} does not match this config (bucket {r.bucket.name})")
            r.states, r.buffers = self.sweep._shard(jax.tree.unflatten(treedef, restored))
        if meta.get("variants"):
            by_name = {v["name"]: v for v in meta["variants"]}
            self._apply_saved_variants(by_name)

    def _apply_saved_variants(self, by_name: dict[str, dict]) -> None:
        """In auto mode the variants may have grown; adopt the widths the checkpoint recorded."""
        for b_index, r in enumerate(self.sweep.runs):
            new = []
            for v in r.bucket.variants:
                match = next((m for m in by_name.values() if m["buffer_size"] == v.buffer_size
                              and m["seed"] == v.seed and m["bucket"] == v.bucket), None)
                if match is not None and match["hidden_dim"] != v.hidden_dim:
                    v = Variant(match["name"], match["hidden_dim"], v.buffer_size, v.seed, v.bucket, v.index, v.max_width)
                new.append(v)
            self._replace_bucket_variants(b_index, new)

    def _replace_bucket_variants(self, b_index: int, new: list[Variant]) -> None:
        import dataclasses

        r = self.sweep.runs[b_index]
        r.bucket = dataclasses.replace(r.bucket, variants=tuple(new))
        r.hidden_dims = r.pad(np.asarray([v.hidden_dim for v in new], np.int32))
        self.sweep.buckets[b_index] = r.bucket
        self.sweep.variants = [v for rr in self.sweep.runs for v in rr.bucket.variants]
        self._open_writers()

    # ------------------------------------------------------------------ TensorBoard
    def _open_writers(self) -> None:
        num_goals = len(self.sweep.goal_ids)
        for v in self.sweep.variants:
            self._params = getattr(self, "_params", {})
            self._params[v.name] = variant_num_params(v, self.sweep.obs_dim, self.sweep.act_dim,
                                                      self.cfg.world_model.num_layers)
            if v.name in self.writers or not self.primary:
                continue
            w = RunWriter(self.tb_root / v.name, purge_step=self._purge_step)
            w.hparams({"hidden_dim": v.hidden_dim, "buffer_size": v.buffer_size, "seed": v.seed},
                      {"regret/avg": 0.0, "advantage/avg": 0.0, "world_model/val_mse": 0.0})
            layout = regret_layout(num_goals)
            w.custom_scalars(layout)
            self.writers[v.name] = w
        if "capacity" not in self.writers and self.primary:
            w = RunWriter(self.tb_root / "capacity")
            bs = sorted(set(self.cfg.variants.buffer_sizes))
            w.custom_scalars({
                "capacity": {
                    "avg_regret vs hidden_dim": ["Multiline", [f"capacity/avg_regret/b{b}" for b in bs]],
                    "avg_advantage vs hidden_dim": ["Multiline", [f"capacity/avg_advantage/b{b}" for b in bs]],
                    "val_mse vs hidden_dim": ["Multiline", [f"capacity/val_mse/b{b}" for b in bs]],
                }
            })
            self.writers["capacity"] = w

    # ------------------------------------------------------------------ one epoch
    def write_epoch(self, epoch: int, result: dict[str, Any], *, t_compute: float) -> None:
        """Writes every artifact of one finished epoch, then checkpoints and consults the controller."""
        sweep, cfg = self.sweep, self.cfg
        t0 = time.perf_counter()
        optimal = np.asarray(result["optimal"], np.float64)
        baseline = np.asarray(result["baseline"], np.float64)
        goals = np.asarray(result["goals"], np.int64)
        episode = np.arange(goals.shape[0])
        records: list[dict] = []
        per_variant: dict[str, dict[str, Any]] = {}
        for r, out in zip(sweep.runs, result["buckets"], strict=True):
            for i, v in enumerate(r.bucket.variants):
                returns = np.asarray(out["returns"][i], np.float64)
                one = jax.tree.map(lambda x, i=i: np.asarray(x[i]), out["one_step"])
                ks = jax.tree.map(lambda x, i=i: np.asarray(x[i]), out["k_step"])
                train = jax.tree.map(lambda x, i=i: np.asarray(x[i]), out["train"])
                nonfinite = int(train["nonfinite_updates"])
                diverged = (v.name in sweep.diverged or nonfinite > 0 or not np.isfinite(one["val_mse"])
                            or not np.all(np.isfinite(returns)))
                if diverged and v.name not in sweep.diverged:
                    log.warning("variant %s diverged at epoch %d (non-finite updates: %d); it is excluded "
                                "from here on, the other variants continue", v.name, epoch, nonfinite)
                    sweep.diverged.add(v.name)
                metrics = {"train_loss": train["train_loss"], "val_mse": one["val_mse"],
                           "per_dim_mse": one["per_dim_mse"], "per_goal_mse": {str(g): one["per_goal_mse"][g] for g in sweep.goal_ids},
                           "k_step_mse": {str(k): ks[k] for k in sorted(ks)}, "samples_seen": int(train["samples_seen"]),
                           "nonfinite_updates": nonfinite, "diverged": diverged}
                meta = {"hidden_dim": v.hidden_dim, "buffer_size": v.buffer_size, "seed": v.seed,
                        "num_params": self._params[v.name]}
                self.wm_stats.record(v.name, epoch, metrics, meta)
                counts = np.asarray(out["counts"][i], np.float64)
                share = (counts / max(counts.sum(), 1.0))[sweep.goal_ids]
                self.collection.setdefault(v.name, []).append([float(x) for x in share])
                per_variant[v.name] = {"variant": v, "returns": returns, "metrics": metrics, "share": share,
                                       "diverged": diverged}
                if diverged:
                    continue
                records.extend(make_judgments(
                    goal_id=goals, reward=returns, optimal=optimal, baseline=baseline, episode=episode,
                    run=self.run_dir.name, variant=v.name, hidden_dim=v.hidden_dim, buffer_size=v.buffer_size,
                    seed=v.seed, epoch=epoch, strategy="mpc_world_model", oracle=sweep.env.oracle))
        if self.primary:
            self._judgment_writer.append(records)

        # TensorBoard, per variant (process 0 has the writers; every process updates the ledger)
        for name, pv in per_variant.items():
            w = self.writers.get(name)
            if w is not None:
                w.scalars(epoch, {"capacity/num_params": float(self._params[name]),
                                  "world_model/diverged": float(pv["diverged"])})
                w.scalars(epoch, {f"collection/goal_{g}/share": float(s)
                                  for g, s in zip(sweep.goal_ids, pv["share"], strict=True)})
                self.wm_stats.write_tb(w.writer, name, epoch, pv["metrics"])
            if pv["diverged"]:
                continue
            reg = optimal - pv["returns"]
            adv = pv["returns"] - baseline
            if w is not None:
                agg = regret.aggregate(jnp.asarray(reg, jnp.float32), jnp.asarray(goals, jnp.int32), sweep.num_goals)
                adv_agg = regret.aggregate(jnp.asarray(adv, jnp.float32), jnp.asarray(goals, jnp.int32), sweep.num_goals)
                write_regret_summaries(w, epoch, agg, adv_agg, per_episode_regret=reg, goal_ids=goals)
            counts_l, sums_l = self.ledger.get(name, (np.zeros(sweep.num_goals), np.zeros(sweep.num_goals)))
            self.ledger[name] = (counts_l + np.bincount(goals, minlength=sweep.num_goals),
                                 sums_l + np.bincount(goals, weights=reg, minlength=sweep.num_goals))
            pv["avg_regret"] = float(reg.mean())
            pv["avg_advantage"] = float(adv.mean())

        # TensorBoard, capacity run: step = hidden_dim, mean over seeds
        groups: dict[tuple[int, int], list[dict]] = {}
        for pv in per_variant.values():
            if not pv["diverged"]:
                groups.setdefault((pv["variant"].hidden_dim, pv["variant"].buffer_size), []).append(pv)
        cap = self.writers.get("capacity")
        for (h, b), items in sorted(groups.items()) if cap is not None else ():
            cap.scalars(h, {
                f"capacity/avg_regret/b{b}": float(np.mean([p["avg_regret"] for p in items])),
                f"capacity/avg_advantage/b{b}": float(np.mean([p["avg_advantage"] for p in items])),
                f"capacity/val_mse/b{b}": float(np.mean([p["metrics"]["val_mse"] for p in items])),
            })
        for w in self.writers.values():
            w.flush()

        # JSON artifacts
        if self.primary:
            self._write_stats()
            self.wm_stats.write(self.wm_stats_path)
            files.write_json_atomic(self.run_dir / "sweep_state.json", {
                "schema": 1, "epoch": epoch, "diverged": {d: epoch for d in sorted(sweep.diverged)},
                "collection": self.collection, "growth": sweep.growth,
                "useful_flop_fraction": sweep.flop_fraction,
            })
        t_io = time.perf_counter() - t0

        # Checkpoint, then the controller (which reads what was just written)
        t1 = time.perf_counter()
        if self.checkpointer is not None:
            self._save_checkpoint(epoch, per_variant)
        self.checkpoint_times.append(time.perf_counter() - t1)
        self.epoch_times.append(t_compute + t_io)
        if cfg.meta.consult_every_epoch or epoch == cfg.epochs - 1:
            self._consult_controller(epoch)

    def _write_stats(self) -> None:
        if not self.judgments_path.exists() or self.judgments_path.stat().st_size == 0:
            return
        j = read_judgments(self.judgments_path)
        stats = build_strategy_stats(j, source=str(self.judgments_path), num_goals=self.sweep.num_goals,
                                     ci_level=self.cfg.regret.ci_level, diverged_variants=set(self.sweep.diverged))
        for exp in stats.get("experiments", []):
            share = self.collection.get(exp.get("variant"))
            if share is not None:
                exp["collection_share_by_epoch"] = {"goals": [int(g) for g in self.sweep.goal_ids], "share": share}
        stats["useful_flop_fraction"] = self.sweep.flop_fraction
        write_strategy_stats(self.stats_path, stats)

    def _save_checkpoint(self, epoch: int, per_variant: dict[str, dict]) -> None:
        sweep = self.sweep
        arrays: dict[str, Any] = {"params": {}, "opt_state": {}, "normalizer": {}, "resume": {}}
        variants_meta = []
        for r in sweep.runs:
            name = r.bucket.name
            arrays["params"][name] = r.states.params
            arrays["opt_state"][name] = r.states.opt_state
            arrays["normalizer"][name] = r.states.normalizer
            leaves = jax.tree.leaves((r.states, r.buffers))
            arrays["resume"][name] = {f"leaf_{i:04d}": leaf for i, leaf in enumerate(leaves)}
            masks = host_copy(r.states.mask)
            for i, v in enumerate(r.bucket.variants):
                pv = per_variant.get(v.name, {})
                val = pv.get("metrics", {}).get("val_mse")
                variants_meta.append({
                    "name": v.name, "hidden_dim": v.hidden_dim, "buffer_size": v.buffer_size, "seed": v.seed,
                    "bucket": name, "index": i, "max_width": v.max_width, "mask": masks[i].tolist(),
                    "val_mse": _finite(val) if val is not None and v.name not in sweep.diverged else None,
                    "diverged": v.name in sweep.diverged,
                })
        vals = [m["val_mse"] for m in variants_meta if m["val_mse"] is not None]
        meta = {"config": to_dict(self.cfg), "env": sweep.env.name, "obs_dim": sweep.obs_dim,
                "act_dim": sweep.act_dim, "num_layers": self.cfg.world_model.num_layers,
                "epoch": epoch, "variants": variants_meta}
        self.checkpointer.save(epoch, arrays=arrays, meta=meta,
                               metrics={"val_mse": min(vals)} if vals else None)

    def _consult_controller(self, epoch: int) -> None:
        expand = self._controller_decides_expand(epoch) if self.primary else False
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            # every process must grow the same variants at the same epoch
            expand = bool(multihost_utils.broadcast_one_to_all(np.int32(expand)))
        if expand:
            self._grow(epoch)

    def _controller_decides_expand(self, epoch: int) -> bool:
        from augnes_jax.meta import MetaJudgmentController

        try:
            if self.controller is None:
                self.controller = MetaJudgmentController.from_config(self.run_dir, self.cfg)
            decision = self.controller.update()
            self.controller.write(self.run_dir, growth=self.sweep.growth)
            self.last_decision = decision
        except Exception as e:  # noqa: BLE001 - the controller must never stop the sweep
            log.warning("MetaJudgmentController failed at epoch %d: %s", epoch, e)
            return False
        return self.cfg.variants.capacity_mode == "auto" and decision.decision == "expand"

    def _grow(self, epoch: int) -> None:
        """Doubles every variant's width (up to the bucket's max) without changing its function."""
        sweep = self.sweep
        for b_index, r in enumerate(sweep.runs):
            new_dims = np.minimum(r.hidden_dims * 2, r.bucket.max_width).astype(np.int32)
            if np.array_equal(new_dims, r.hidden_dims):
                continue
            r.states = sweep._shard(jax.vmap(r.wm.grow)(r.states, jnp.asarray(new_dims)))
            new = []
            for v, h in zip(r.bucket.variants, new_dims[:len(r.bucket.variants)], strict=True):
                nv = Variant(variant_name(int(h), v.buffer_size, v.seed), int(h), v.buffer_size, v.seed, v.bucket,
                             v.index, v.max_width)
                sweep.growth.append({"epoch": epoch, "from": v.name, "to": nv.name,
                                     "hidden_dim": [v.hidden_dim, int(h)]})
                self.ledger[nv.name] = self.ledger.get(v.name, (np.zeros(sweep.num_goals), np.zeros(sweep.num_goals)))
                self.collection[nv.name] = list(self.collection.get(v.name, []))
                new.append(nv)
            self._replace_bucket_variants(b_index, new)
            log.info("capacity grown at epoch %d: %s", epoch, ", ".join(f"{g['from']} -> {g['to']}" for g in sweep.growth[-len(new):]))
        if self.primary:
            files.write_json_atomic(self.run_dir / "sweep_state.json", {
                **files.read_json(self.run_dir / "sweep_state.json"), "growth": sweep.growth})

    def _latest_val_mse(self, name: str) -> float | None:
        entry = self.wm_stats.latest(name)
        return None if entry is None else entry.get("val_mse")

    # ------------------------------------------------------------------ progress & summary
    @contextlib.contextmanager
    def progress(self, start_epoch: int):
        """Yields ``advance(epoch)``; shows a rich progress bar with an ETA when enabled."""
        total = self.cfg.epochs
        if not self.sweep.show_progress:
            yield lambda epoch: None
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        n_var = len(self.sweep.variants)
        with Progress(TextColumn("[bold]sweep[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), transient=False) as bar:
            task = bar.add_task(f"{n_var} variants, {total} epochs (compiling...)", total=total, completed=start_epoch)

            def advance(epoch: int) -> None:
                best = min((self._latest_val_mse(v.name) or np.inf) for v in self.sweep.variants)
                bar.update(task, completed=epoch + 1,
                           description=f"{n_var} variants, epoch {epoch + 1}/{total}, best val_mse {best:.2e}")

            yield advance

    def summary(self, wall_s: float) -> dict[str, Any]:
        """Returns the final summary (and prints the table, run directory and TensorBoard command)."""
        stats = files.read_json(self.stats_path) if self.stats_path.exists() else {"experiments": []}
        by_name = {e["variant"]: e for e in stats.get("experiments", []) if "variant" in e}
        rows = []
        for v in self.sweep.variants:
            e = by_name.get(v.name, {})
            rows.append({
                "variant": v.name, "params": self._params.get(v.name), "val_mse": self._latest_val_mse(v.name),
                "avg_regret": e.get("avg_regret"), "avg_regret_ci95": e.get("avg_regret_ci95"),
                "avg_advantage": e.get("avg_advantage"), "diverged": v.name in self.sweep.diverged,
            })
        summary = {"run_dir": str(self.run_dir), "rows": rows, "wall_s": wall_s,
                   "useful_flop_fraction": self.sweep.flop_fraction,
                   "decision": getattr(self.last_decision, "decision", None)}
        if self.sweep.show_progress:
            _print_summary(summary, self.tb_root)
        return summary

    def close(self) -> None:
        """Flushes and closes every writer and waits for pending checkpoint saves."""
        for w in self.writers.values():
            with contextlib.suppress(Exception):
                w.close()
        if self._judgment_writer is not None:
            self._judgment_writer.close()
        if self.checkpointer is not None:
            self.checkpointer.close()
        if self.controller is not None:
            with contextlib.suppress(Exception):
                self.controller.close()


def _fmt(x, spec: str = ".4g") -> str:
    return "-" if x is None else format(x, spec)


def _print_summary(summary: dict[str, Any], tb_root: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="capacity sweep")
    for col in ("variant", "params", "val MSE", "avg regret ± 95% CI", "advantage", "status"):
        table.add_column(col, justify="right" if col not in ("variant", "status") else "left")
    for r in summary["rows"]:
        ci = r["avg_regret_ci95"]
        ci_s = f" ± {(ci[1] - ci[0]) / 2:.3f}" if ci and None not in ci else ""
        table.add_row(r["variant"], _fmt(r["params"], "d"), _fmt(r["val_mse"], ".3e"),
                      f"{_fmt(r['avg_regret'], '.3f')}{ci_s}", _fmt(r["avg_advantage"], ".3f"),
                      "[red]diverged[/]" if r["diverged"] else "ok")
    console.print(table)
    console.print(f"useful-FLOP fraction {summary['useful_flop_fraction']:.2f} · wall {summary['wall_s']:.1f}s"
                  + (f" · controller: {summary['decision']}" if summary.get("decision") else ""))
    console.print(f"run directory: {summary['run_dir']}")
    rel = os.path.relpath(tb_root)
    console.print(f"tensorboard --logdir {tb_root if rel.startswith('..') else rel}")
