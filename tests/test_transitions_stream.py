"""Transitions files read from disk in chunks: the same rows as reading them whole, in bounded memory."""

from __future__ import annotations

import json
import tracemalloc

import jax
import numpy as np
import polars as pl
import pytest

from augnes_jax import buffer as rb
from augnes_jax import data_sweep, sweep
from augnes_jax.config import load_config
from augnes_jax.epoch import init_bucket_buffers
from augnes_jax.memory_check import estimate_data_bytes
from augnes_jax.transitions import (
    DataError,
    Transitions,
    contiguous_windows,
    load_transitions,
    split_by_episode,
    window_starts,
)
from augnes_jax.transitions_stream import _Windows, plan_split, read_kept, scan_file
from augnes_jax.variants import build_buckets
from tests.test_transitions import bad_cases, reacher_transitions


@pytest.fixture(scope="module")
def arrays():
    return reacher_transitions(num_episodes=30, episode_length=40)


def write(path, arrays, kind):
    """Writes `arrays` as `kind`: npz, npz_compressed, npz_fortran (2-D arrays column-major) or parquet."""
    if kind == "parquet":
        path = path.with_suffix(".parquet")
        pl.DataFrame(dict(arrays)).write_parquet(path, row_group_size=64)
    elif kind == "npz_fortran":
        np.savez(path, **{k: np.asfortranarray(v) for k, v in arrays.items()})
    else:
        (np.savez_compressed if kind == "npz_compressed" else np.savez)(path, **arrays)
    return path


def streamed(path, *, holdout=0.2, seed=3, keep=500, max_eval_rows=10**6, length=5, chunk_rows=7, drop=False):
    scan = scan_file(path, chunk_rows=chunk_rows, drop_nonfinite=drop)
    plan = plan_split(scan, holdout, seed)
    return scan, plan, read_kept(scan, plan, keep_train_rows=keep, max_eval_rows=max_eval_rows, window_length=length,
                                 chunk_rows=chunk_rows, seed=seed)


def assert_same(a, b):
    assert (a is None) == (b is None)
    if a is not None:
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def assert_kept_equals_whole(npz_path, path, *, drop=False, keep=500, **kw):
    """The chunked reader keeps exactly the rows that reading the .npz whole and splitting it gives."""
    whole = load_transitions(npz_path, drop_nonfinite=drop)
    train, held = split_by_episode(whole, 0.2, seed=3)
    scan, plan, kept = streamed(path, drop=drop, keep=keep, **kw)
    assert (scan.rows, plan.train_rows, plan.held_out_rows) == (whole.num_rows, train.num_rows, held.num_rows)
    assert scan.num_goals == whole.num_goals and scan.action_dim == whole.action.shape[1]
    for mine, ref in zip(kept.train, train.take(np.arange(train.num_rows)[-keep:]), strict=True):
        assert_same(mine, ref)
    for mine, ref in zip(kept.held_out, held, strict=True):
        assert_same(mine, ref)
    obs_seq, action_seq = contiguous_windows(held, 5)
    assert_same(kept.obs_seq, obs_seq)
    assert_same(kept.action_seq, action_seq)
    assert_same(kept.goal_seq, held.goal_id[window_starts(held, 5)])
    assert kept.windows == len(obs_seq)
    return kept


@pytest.mark.parametrize("kind", ["npz", "npz_compressed", "npz_fortran", "parquet"])
def test_chunked_reading_keeps_the_rows_of_the_whole_file(tmp_path, arrays, kind):
    kept = assert_kept_equals_whole(write(tmp_path / "t.npz", arrays, "npz"), write(tmp_path / "s.npz", arrays, kind))
    assert kept.train.num_rows == 500 and len(kept.obs_seq) > 0  # windows crossing chunk boundaries among them


def test_parquet_keeps_what_npz_keeps(tmp_path, arrays):
    _, _, a = streamed(write(tmp_path / "t.npz", arrays, "npz"), chunk_rows=11)
    _, _, b = streamed(write(tmp_path / "t.npz", arrays, "parquet"), chunk_rows=64)
    for x, y in zip(a.train + a.held_out, b.train + b.held_out, strict=True):
        assert_same(x, y)
    for x, y in zip(a[2:], b[2:], strict=True):
        assert_same(np.asarray(x), np.asarray(y))


def test_dropped_rows_discrete_actions_and_row_split(tmp_path, arrays):
    data = {k: v for k, v in arrays.items() if k != "episode_id"}
    data["action"] = (np.arange(len(data["obs"])) * 7) % 5
    data["obs"] = data["obs"].copy()
    data["obs"][[3, 50, 51, 999]] = np.nan
    npz = write(tmp_path / "t.npz", data, "npz")
    kept = assert_kept_equals_whole(npz, npz, drop=True, keep=10**6)
    assert kept.held_out.action.shape[1] == 5 and not len(kept.obs_seq)  # no episode ids: no sequences
    assert kept.train.num_rows + kept.held_out.num_rows == len(data["obs"]) - 4
    with_ids = write(tmp_path / "ids.npz", {**data, "episode_id": arrays["episode_id"]}, "parquet")
    assert_kept_equals_whole(write(tmp_path / "ids.npz", {**data, "episode_id": arrays["episode_id"]}, "npz"),
                             with_ids, drop=True)


def test_held_out_rows_beyond_max_eval_rows_are_a_seeded_uniform_sample(tmp_path, arrays):
    path = write(tmp_path / "t.npz", arrays, "npz")
    _, held = split_by_episode(load_transitions(path), 0.2, seed=3)
    _, plan, kept = streamed(path, max_eval_rows=50)
    pick = np.sort(np.random.default_rng([3, 1]).choice(held.num_rows, size=50, replace=False))
    for mine, ref in zip(kept.held_out, held.take(pick), strict=True):
        assert_same(mine, ref)
    # sequences: 10 of the held-out ones, in their order
    obs_seq, _ = contiguous_windows(held, 5)
    assert len(kept.obs_seq) == 50 // 5 and kept.windows == len(obs_seq) > 10
    index = [int(np.flatnonzero((obs_seq == s).all(axis=(1, 2)))[0]) for s in kept.obs_seq]
    assert index == sorted(index)
    _, _, again = streamed(path, max_eval_rows=50, chunk_rows=13)
    np.testing.assert_array_equal(again.held_out.obs, kept.held_out.obs)  # the sample does not depend on chunks


def test_the_sequence_sample_is_uniform():
    """Every one of 60 sequences is kept in 12 of them about 1/5 of the time over 500 seeds."""
    t = load_like_sequences(60 * 3)
    counts = np.zeros(60)
    for seed in range(500):
        w = _Windows(3, 12, seed)
        for lo in range(0, t.num_rows, 17):
            w.add(t.take(np.arange(lo, min(lo + 17, t.num_rows))))
        obs_seq, _, _ = w.result(1, 1)
        assert len(obs_seq) == 12 and w.seen == 60
        counts[(obs_seq[:, 0, 0] // 3).astype(int)] += 1
    np.testing.assert_allclose(counts / 500, 0.2, atol=0.1)  # 5 binomial standard deviations


def load_like_sequences(n):
    obs = np.arange(n, dtype=np.float32)[:, None]
    return Transitions(obs=obs, action=obs, next_obs=obs + 1, goal_id=np.zeros(n, np.int32), reward=None,
                       terminated=None, episode_id=np.zeros(n, np.int64))


SMALL = ["epochs=1", "variants.hidden_dims=[4,16]", "variants.buffer_sizes=[300,700]", "variants.seeds=[0]",
         "world_model.train_steps_per_epoch=5", "world_model.batch_size=16", "world_model.k_steps=[1,5]",
         "data.chunk_rows=7"]


@pytest.fixture(scope="module")
def data_file(tmp_path_factory, arrays):
    return write(tmp_path_factory.mktemp("data") / "t.npz", arrays, "npz")


@pytest.fixture(scope="module")
def prepared(data_file):
    cfg = load_config(None, [f"data.path={data_file}", *SMALL])
    data = data_sweep.prepare(cfg)
    return cfg, data, data_sweep.make_fits(data)


def test_buffers_equal_buffers_given_every_training_row(prepared, data_file):
    cfg, data, fits = prepared
    train, _ = split_by_episode(load_transitions(data_file), 0.2, cfg.seed)
    assert data.train_rows == train.num_rows > 700 == data.train.num_rows
    items = data_sweep.buffer_items(train)
    for fit in fits:
        capacity = np.asarray([v.buffer_size for v in fit.bucket.variants], np.int32)
        empty = init_bucket_buffers(jax.tree.map(lambda x: x[0], items), fit.bucket.max_buffer_size, capacity)
        ref = jax.vmap(rb.add, in_axes=(0, None))(empty, items)
        np.testing.assert_array_equal(fit.buffers.count, ref.count)
        for name in items:
            np.testing.assert_array_equal(fit.buffers.data[name], ref.data[name], err_msg=name)


def tree_bytes(tree):
    return sum(x.nbytes for x in jax.tree.leaves(tree))


def test_memory_estimate_equals_the_bytes_of_the_arrays_built(prepared, data_file, arrays):
    cfg, data, fits = prepared
    scan = scan_file(data_file, chunk_rows=7, drop_nonfinite=False)
    v = cfg.variants
    parts = estimate_data_bytes(cfg, build_buckets(v.hidden_dims, v.buffer_sizes, v.seeds, v.bucket_ratio), scan,
                                train_rows=data.train.num_rows, eval_rows=data.eval_rows, windows=len(data.obs_seq))
    assert parts["ring_buffers"] == sum(tree_bytes(f.buffers.data) for f in fits)
    params = sum(tree_bytes(f.states.params) for f in fits)
    assert parts["params_optimizer"] == 3 * params  # parameters and Adam's two moments
    assert params * 3 <= sum(tree_bytes((f.states.params, f.states.opt_state)) for f in fits) <= 1.01 * params * 3
    kept = (tree_bytes([x for x in data.train + data.held_out if x is not None])
            + data.obs_seq.nbytes + data.action_seq.nbytes + data.goal_seq.nbytes)
    assert parts["kept_rows"] == kept
    held = data.held_out
    per_bucket = sum(x.nbytes for x in (held.obs, held.action, held.next_obs, held.goal_id, data.obs_seq,
                                        data.action_seq))
    assert parts["evaluation_arrays"] == len(fits) * per_bucket
    row = sum(x[:1].nbytes for x in arrays.values())
    converted = tree_bytes([x[:1] for x in data.train if x is not None])
    assert parts["chunk"] == 7 * (row + converted)
    assert data.needs_bytes >= sum(parts.values())  # estimated before the sequences were counted: at most


def test_a_run_that_does_not_fit_is_refused_before_anything_is_written(tmp_path, data_file, capsys):
    out = tmp_path / "run"
    args = ["--run-dir", str(out), f"data.path={data_file}", *SMALL, "variants.buffer_sizes=[2000000000]"]
    assert sweep.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "the data run needs about" in err and "GiB is available" in err, err
    assert not out.exists()


def test_the_run_says_what_it_needs_and_what_it_used(tmp_path, data_file, caplog):
    out = tmp_path / "run"
    with caplog.at_level("INFO", logger="augnes_jax.data_sweep"):
        data = data_sweep.prepare(load_config(None, [f"data.path={data_file}", *SMALL, "data.max_eval_rows=100"]))
    assert any("data run needs about" in r.getMessage() and "GiB" in r.getMessage() for r in caplog.records)
    out.mkdir()
    doc = data_sweep.run(data, out)["data"]
    assert doc == json.loads((out / "decision.json").read_text())["data"]
    assert (doc["rows"], doc["train_rows"] + doc["held_out_rows"]) == (1200, 1200)
    assert (doc["buffer_rows"], doc["eval_rows"], doc["k_step_sequences"]) == (700, 100, 100 // 5)
    assert doc["held_out_rows"] == 240 and doc["held_out_k_step_sequences"] == 6 * 8  # 6 episodes of 40 steps


def test_reading_a_large_file_holds_a_fraction_of_it(tmp_path):
    """200k rows read 4096 at a time keep 1000 training and 2000 held-out rows: far below the file's bytes."""
    n, rng = 200_000, np.random.default_rng(0)
    path = tmp_path / "big.npz"
    obs = rng.normal(size=(n, 6)).astype(np.float32)
    np.savez(path, obs=obs, next_obs=obs + 1, action=rng.normal(size=(n, 2)).astype(np.float32),
             goal_id=np.zeros(n, np.int64), reward=np.zeros(n, np.float32), episode_id=np.arange(n) // 100)
    file_bytes = n * (4 * 6 * 2 + 4 * 2 + 8 + 4 + 8)
    del obs
    tracemalloc.start()
    try:
        _, plan, kept = streamed(path, keep=1000, max_eval_rows=2000, chunk_rows=4096)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert kept.train.num_rows == 1000 and kept.held_out.num_rows == 2000 and plan.held_out_rows == 40_000
    assert peak < file_bytes / 8, (peak, file_bytes)


@pytest.mark.parametrize("name,expected", [("text", "cannot read as .npz"), ("npy", "not an .npz archive"),
                                           ("none", "no such file"), ("truncated", "ends at row"),
                                           ("parquet", "cannot read as Parquet")])
def test_unreadable_files_are_data_errors(tmp_path, arrays, name, expected):
    path = tmp_path / f"{name}.npz"
    if name == "parquet":
        path = tmp_path / "text.parquet"
        path.write_text("not a Parquet file")
    elif name == "text":
        path.write_text("not a zip")
    elif name == "npy":
        np.save(tmp_path / "x.npy", arrays["obs"])
        (tmp_path / "x.npy").rename(path)
    elif name == "truncated":
        np.savez(path, **arrays)
        path = tmp_path / "cut.npz"
        _cut_member(tmp_path / f"{name}.npz", path, "reward.npy")
    with pytest.raises(DataError, match=expected) as info:
        scan_file(path, chunk_rows=7, drop_nonfinite=False)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def _cut_member(src, dst, member):
    """Copies the archive `src` to `dst` with `member`'s data cut short (its header still says N rows)."""
    import zipfile

    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "w") as b:
        for info in a.infolist():
            data = a.read(info)
            b.writestr(info.filename, data[:-40] if info.filename == member else data)


@pytest.mark.parametrize("case", sorted(bad_cases(reacher_transitions(2, 10))))
def test_chunked_checks_say_what_reading_whole_says(tmp_path, arrays, case):
    data, expected = bad_cases(arrays)[case]
    path = write(tmp_path / "bad.npz", data, "npz")
    with pytest.raises(DataError) as whole:
        load_transitions(path)
    with pytest.raises(DataError) as chunked:
        scan_file(path, chunk_rows=7, drop_nonfinite=False)
    assert str(chunked.value) == str(whole.value) and expected in str(chunked.value)
