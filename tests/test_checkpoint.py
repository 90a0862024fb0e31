"""Orbax checkpoints: retention, restore without a template, loading in a fresh process, errors."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from augnes_jax import checkpoint as ckpt
from augnes_jax import checkpoint_meta, checkpoint_read, inference
from augnes_jax import world_model as W

OBS, ACT = 4, 2
REPO = Path(__file__).resolve().parent.parent


def _toy_data(n, seed):
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, OBS)).astype(np.float32)
    act = rng.uniform(-1, 1, (n, ACT)).astype(np.float32)
    nxt = obs + 0.1 * np.tanh(obs[:, ::-1] * act[:, :1] + act[:, 1:]).astype(np.float32)
    return obs, act, nxt


def _meta(variants):
    return {
        "config": {"world_model": {"num_layers": 2}},
        "env": "toy",
        "obs_dim": OBS,
        "act_dim": ACT,
        "num_layers": 2,
        "variants": variants,
    }


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A run directory with two buckets (w16: h8, h16; w4: h3) and a data normalizer, saved."""
    run_dir = tmp_path_factory.mktemp("run")
    obs, act, nxt = _toy_data(256, 0)
    states, variants = {}, []
    for bucket, width, hidden, vals in (("w16", 16, [8, 16], [0.3, 0.05]), ("w4", 4, [3], [0.2])):
        wm = W.make_world_model(OBS, ACT, max_width=width, num_layers=2, batch_size=32)
        n = len(hidden)
        s = jax.jit(jax.vmap(wm.init))(
            jax.random.split(jax.random.key(width), n), jnp.array(hidden)
        )
        norm = W.compute_normalizer(obs, act, nxt)
        s = s.replace(normalizer=jax.tree.map(lambda x, n=n: jnp.stack([x] * n), norm))
        states[bucket] = s
        for i, (h, v) in enumerate(zip(hidden, vals, strict=True)):
            variants.append(
                {
                    "name": f"h{h}-b256-s0",
                    "hidden_dim": h,
                    "buffer_size": 256,
                    "seed": 0,
                    "bucket": bucket,
                    "index": i,
                    "max_width": width,
                    "mask": [1] * h + [0] * (width - h),
                    "val_mse": v,
                }
            )
    with ckpt.SweepCheckpointer(run_dir / "checkpoints") as saver:
        saver.save(
            3,
            arrays=ckpt.world_model_arrays(states),
            meta=_meta(variants),
            metrics={"val_mse": 0.05},
        )
    models = {
        "w16": W.make_world_model(OBS, ACT, max_width=16, num_layers=2),
        "w4": W.make_world_model(OBS, ACT, max_width=4, num_layers=2),
    }
    return run_dir, states, variants, models


def _expected(trained_run, name, obs, act):
    _, states, variants, models = trained_run
    v = next(v for v in variants if v["name"] == name)
    state = jax.tree.map(lambda x: x[v["index"]], states[v["bucket"]])
    return np.asarray(models[v["bucket"]].predict_delta(state, obs, act))


def test_load_in_a_fresh_process_matches_the_in_memory_model(trained_run, tmp_path):
    run_dir = trained_run[0]
    obs, act, _ = _toy_data(7, 9)
    np.save(tmp_path / "obs.npy", obs)
    np.save(tmp_path / "act.npy", act)
    script = textwrap.dedent(
        f"""
        import json, sys, numpy as np
        from augnes_jax.inference import load_world_model
        obs, act = np.load({str(tmp_path / "obs.npy")!r}), np.load({str(tmp_path / "act.npy")!r})
        out = {{}}
        for name in ("best", "h3-b256-s0", "h8-b256-s0"):
            p = load_world_model({str(run_dir)!r}, variant=name)
            out[name] = {{"variant": p.variant, "hidden_dim": p.hidden_dim, "env": p.env,
                         "delta": np.asarray(p.predict_delta(obs, act)).tolist(),
                         "one": np.asarray(p.predict_next(obs[0], act[0])).tolist(),
                         "kernel": list(p.params["params"]["hidden_1"]["kernel"].shape),
                         "device": str(p.params["params"]["out"]["bias"].devices())}}
        print(json.dumps(out))
        """
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["best"]["variant"] == "h16-b256-s0"  # lowest val_mse in the meta
    assert out["best"]["env"] == "toy"
    assert out["h3-b256-s0"]["kernel"] == [3, 3]  # sliced down to a dense width-3 network
    assert "cpu" in out["best"]["device"].lower()
    for name, key in (
        ("best", "h16-b256-s0"),
        ("h3-b256-s0", "h3-b256-s0"),
        ("h8-b256-s0", "h8-b256-s0"),
    ):
        want = _expected(trained_run, key, obs, act)
        np.testing.assert_allclose(out[name]["delta"], want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out[name]["one"], obs[0] + want[0], rtol=1e-5, atol=1e-6)


def test_restore_without_a_template_gives_numpy_values(trained_run):
    run_dir, states, _, _ = trained_run
    saver = ckpt.SweepCheckpointer(run_dir / "checkpoints")
    try:
        assert saver.all_steps() == [3] and saver.latest_step() == 3
        arrays, meta = saver.restore()
        assert meta["obs_dim"] == OBS and len(meta["variants"]) == 3
        got = arrays["params"]["w16"]["params"]["hidden_1"]["kernel"]
        assert isinstance(got, np.ndarray)
        np.testing.assert_array_equal(got, states["w16"].params["params"]["hidden_1"]["kernel"])
        np.testing.assert_array_equal(
            arrays["normalizer"]["w4"]["delta_std"], states["w4"].normalizer.delta_std
        )
        # With a template the optax state comes back with its own structure.
        like = {"opt_state": {b: s.opt_state for b, s in states.items()}}
        typed, _ = saver.restore(3, items=("opt_state",), like=like)
        assert jax.tree.structure(typed["opt_state"]) == jax.tree.structure(like["opt_state"])
        for a, b in zip(
            jax.tree.leaves(typed["opt_state"]), jax.tree.leaves(like["opt_state"]), strict=True
        ):
            np.testing.assert_array_equal(a, b)
    finally:
        saver.close()


def _save_steps(saver, vals, start=0):
    tiny = {"params": {"w2": {"x": np.arange(3.0)}}, "opt_state": {}}  # empty items are skipped
    for i, v in enumerate(vals):
        saver.save(start + i, arrays=tiny, meta=_meta([]), metrics={"val_mse": v})
    saver.wait()


def test_retention_keeps_latest_and_best_across_restarts(tmp_path):
    with ckpt.SweepCheckpointer(tmp_path / "c", keep_last=2) as saver:
        _save_steps(saver, [0.5, 0.1, 0.3, 0.4, float("nan")])
        assert saver.all_steps() == [1, 3, 4]  # latest two + the best (a NaN never wins)
    with ckpt.SweepCheckpointer(tmp_path / "c", keep_last=2) as saver:  # metrics were persisted
        _save_steps(saver, [0.2, 0.6], start=5)
        assert saver.all_steps() == [1, 5, 6]
        assert saver.best_step() == 1
    with ckpt.SweepCheckpointer(tmp_path / "d", keep_last=1, keep_best=False) as saver:
        _save_steps(saver, [0.1, 0.3, 0.4])
        assert saver.all_steps() == [2]


def test_save_rejects_reserved_names(tmp_path):
    with (
        ckpt.SweepCheckpointer(tmp_path / "c") as saver,
        pytest.raises(ValueError, match="reserved"),
    ):
        saver.save(0, arrays={"meta": {"x": np.zeros(1)}}, meta={})


def _copy_run(trained_run, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(trained_run[0], dst)
    return dst


def _assert_one_line_error(run_dir, match, exc=checkpoint_meta.CheckpointError, **kwargs):
    with pytest.raises(exc) as info:
        inference.load_world_model(run_dir, **kwargs)
    text = str(info.value)
    assert "\n" not in text
    assert match in text, text
    return text


def test_missing_partial_and_corrupt_checkpoints(trained_run, tmp_path):
    _assert_one_line_error(tmp_path / "nope", "no such run directory")
    (tmp_path / "empty" / "checkpoints").mkdir(parents=True)
    _assert_one_line_error(tmp_path / "empty", "no committed checkpoint")

    run = _copy_run(trained_run, tmp_path)
    _assert_one_line_error(run, "no checkpoint at step 7", step=7)
    text = _assert_one_line_error(
        run, "unknown variant 'h99'", exc=checkpoint_meta.UnknownVariantError, variant="h99"
    )
    assert "h8-b256-s0" in text

    shutil.rmtree(run / "checkpoints" / "3" / "params")
    text = _assert_one_line_error(run, "'params' is missing")
    assert str(run / "checkpoints" / "3" / "params") in text

    run = _copy_run(trained_run, tmp_path / "b")
    (run / "checkpoints" / "3" / "meta" / "metadata").write_text("{not json")
    _assert_one_line_error(run, str(run / "checkpoints" / "3" / "meta"))

    run = _copy_run(trained_run, tmp_path / "c")
    for root, _, names in os.walk(run / "checkpoints" / "3" / "normalizer"):
        for name in names:
            Path(root, name).write_bytes(b"\x00garbage\x00" * 3)
    _assert_one_line_error(run, str(run / "checkpoints" / "3" / "normalizer"))

    run = _copy_run(trained_run, tmp_path / "d")
    (run / "checkpoints" / "3" / "_CHECKPOINT_METADATA").unlink()
    _assert_one_line_error(run, "partial checkpoint")


def test_single_variant_layout_loads_without_val_mse(tmp_path):
    wm = W.make_world_model(OBS, ACT, max_width=6, num_layers=1)
    state = jax.tree.map(lambda x: x[None], wm.init(jax.random.key(0), 6))
    variant = {
        "name": "h6-b100-s0",
        "hidden_dim": 6,
        "buffer_size": 100,
        "seed": 0,
        "bucket": "w6",
        "index": 0,
        "max_width": 6,
        "mask": [1] * 6,
        "val_mse": None,
    }
    meta = {**_meta([variant]), "num_layers": 1}
    with ckpt.SweepCheckpointer(tmp_path / "checkpoints") as saver:
        saver.save(0, arrays=ckpt.world_model_arrays({"w6": state}), meta=meta)
    p = inference.load_world_model(tmp_path)
    assert (p.variant, p.hidden_dim, p.step) == ("h6-b100-s0", 6, 0)
    obs, act, _ = _toy_data(3, 1)
    want = wm.predict_delta(jax.tree.map(lambda x: x[0], state), obs, act)
    np.testing.assert_allclose(p.predict_delta(obs, act), want, rtol=1e-6, atol=1e-7)


def _with(variants, name, **fields):
    return [{**v, **fields} if v["name"] == name else v for v in variants]


def _extra_layer(arrays):
    """Returns ``arrays`` with a layer the network does not have (a copy: the fixture is shared)."""
    layers = dict(arrays["params"]["w16"]["params"])
    layers["extra"] = dict(layers["hidden_1"])
    return {**arrays, "params": {**arrays["params"], "w16": {"params": layers}}}


def _normalizer_of_another_bucket(arrays):
    return {**arrays, "normalizer": {"w4": arrays["normalizer"]["w4"]}}


H8 = "h8-b256-s0"
# (meta fields, variants(variants), arrays(arrays), variant to load, the error's text)
INVALID = {
    "obs_dim_zero": ({"obs_dim": 0}, None, None, H8, "meta field 'obs_dim' must be a positive integer, got 0"),
    "act_dim_bool": ({"act_dim": True}, None, None, H8, "meta field 'act_dim' must be a positive integer, got True"),
    "num_layers_missing": ({"num_layers": None}, None, None, H8, "'num_layers' must be a positive integer, got None"),
    "no_variants": ({}, lambda vs: [], None, H8, "meta field 'variants' must be a non-empty list of objects"),
    "variant_not_an_object": ({}, lambda vs: ["h8"], None, H8, "'variants' must be a non-empty list of objects"),
    "no_finite_val_mse": ({}, lambda vs: [{**v, "val_mse": None} for v in vs], None, "best",
                          "no variant has a finite val_mse; name one of h8-b256-s0, h16-b256-s0, h3-b256-s0"),
    "hidden_dim_not_int": ({}, lambda vs: _with(vs, H8, hidden_dim=8.0), None, H8,
                           "meta field 'hidden_dim' must be a positive integer, got 8.0"),
    "unknown_bucket": ({}, lambda vs: _with(vs, H8, bucket="w99"), None, H8,
                       "variant 'h8-b256-s0' names bucket 'w99', not in params"),
    "bucket_not_in_normalizer": ({}, None, _normalizer_of_another_bucket, H8,
                                 "variant 'h8-b256-s0' names bucket 'w16', not in normalizer"),
    "index_out_of_range": ({}, lambda vs: _with(vs, H8, index=5), None, H8,
                           "variant 'h8-b256-s0' (bucket 'w16', index 5) does not match the arrays"),
    "wider_than_its_bucket": ({}, lambda vs: _with(vs, H8, hidden_dim=32, mask=None), None, H8,
                              "variant 'h8-b256-s0' hidden_dim 32 > width 16"),
    "mask_with_a_hole": ({}, lambda vs: _with(vs, H8, mask=[1] * 7 + [0, 1] + [0] * 7), None, H8,
                         "variant 'h8-b256-s0' mask is not 8 leading ones"),
    "obs_dim_of_another_env": ({"obs_dim": OBS + 1}, None, None, H8,
                               "params of variant 'h8-b256-s0' do not fit obs_dim/act_dim/num_layers"),
    "unexpected_layer": ({}, None, _extra_layer, H8, "unexpected layer 'extra' in params"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(INVALID))
def test_load_world_model_names_what_is_wrong_with_the_checkpoint(trained_run, tmp_path, case):
    fields, edit_variants, edit_arrays, variant, needle = INVALID[case]
    _, states, variants, _ = trained_run
    variants = edit_variants(variants) if edit_variants else variants
    arrays = ckpt.world_model_arrays(states)
    arrays = edit_arrays(arrays) if edit_arrays else arrays
    with ckpt.SweepCheckpointer(tmp_path / "checkpoints") as saver:
        saver.save(3, arrays=arrays, meta={**_meta(variants), **fields})
    text = _assert_one_line_error(tmp_path, needle, variant=variant)
    if case != "no_finite_val_mse":
        assert text.startswith(f"{tmp_path / 'checkpoints' / '3' / 'meta'}: "), text


def test_a_directory_without_checkpoints_is_named(tmp_path):
    (tmp_path / "run").mkdir()
    _assert_one_line_error(tmp_path / "run", f"{tmp_path / 'run'}: no checkpoints directory")


def _meta_file(step_dir: Path) -> Path:
    return step_dir / checkpoint_read.META_ITEM / "metadata"


def test_checksums_that_are_not_numbers_are_named_not_trusted(tmp_path):
    from tests.toy_checkpoint import write_toy_checkpoint

    directory = write_toy_checkpoint(tmp_path / "run") / "checkpoints"
    meta = json.loads(_meta_file(directory / "0").read_text())
    assert sorted(meta["checksums"]) == ["normalizer", "opt_state", "params"]  # every array item
    meta["checksums"]["params"] = [["x", 1, 2]]
    _meta_file(directory / "0").write_text(json.dumps(meta))
    with pytest.raises(checkpoint_meta.CheckpointError, match=r"params: its recorded checksums are unreadable$"):
        checkpoint_read.restore_checkpoint(directory, 0)


def test_a_meta_item_that_is_not_an_object_and_an_empty_directory_are_named(tmp_path):
    from tests.toy_checkpoint import write_toy_checkpoint

    directory = write_toy_checkpoint(tmp_path / "run") / "checkpoints"
    _meta_file(directory / "0").write_text("[1, 2]")
    with pytest.raises(checkpoint_meta.CheckpointError, match=r"meta: expected a JSON object$"):
        checkpoint_read.restore_checkpoint(directory, 0)
    with pytest.raises(checkpoint_meta.CheckpointError, match=r"no intact checkpoint in .*meta: expected a JSON object$"):
        checkpoint_read.restore_newest_intact(directory)
    empty = tmp_path / "empty"
    empty.mkdir()
    for restore in (checkpoint_read.restore_checkpoint, checkpoint_read.restore_newest_intact):
        with pytest.raises(checkpoint_meta.CheckpointError, match=r"empty: no committed checkpoint$"):
            restore(empty)
    with pytest.raises(checkpoint_meta.CheckpointError, match=r"nowhere: no checkpoint directory$"):
        checkpoint_read.restore_newest_intact(tmp_path / "nowhere")


def test_checkpoint_keeps_the_names_callers_import_from_it():
    assert ckpt.load_world_model is inference.load_world_model and ckpt.Predictor is inference.Predictor
    for name in ("CheckpointError", "UnknownVariantError", "CheckpointWriteError"):
        assert getattr(ckpt, name) is getattr(checkpoint_meta, name)
    for name in ("restore_checkpoint", "restore_newest_intact", "checkpoint_steps", "resolve_checkpoint_dir"):
        assert getattr(ckpt, name) is getattr(checkpoint_read, name)


def test_the_meta_format_imports_neither_orbax_nor_jax():
    import ast

    tree = ast.parse((REPO / "augnes_jax" / "checkpoint_meta.py").read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported  # the walk found the module's imports
    assert not {m for m in imported if m.split(".")[0] in ("orbax", "jax", "flax", "numpy")}, imported
    assert {m for m in imported if m.startswith("augnes_jax")} == {"augnes_jax.errors"}
