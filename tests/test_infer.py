"""The inference CLI: values against the in-memory model, and one-line errors with status 2."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from augnes_jax import checkpoint as ckpt
from augnes_jax import infer
from augnes_jax import world_model as W

OBS, ACT = 3, 2
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run with one bucket w8 holding h5 (val 0.2) and h8 (val 0.1)."""
    run_dir = tmp_path_factory.mktemp("infer_run")
    wm = W.make_world_model(OBS, ACT, max_width=8, num_layers=2)
    states = jax.jit(jax.vmap(wm.init))(jax.random.split(jax.random.key(0), 2), jnp.array([5, 8]))
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(64, OBS)).astype(np.float32)
    act = rng.uniform(-1, 1, (64, ACT)).astype(np.float32)
    nxt = obs + 0.3 * act[:, :1] * obs
    norm = W.compute_normalizer(obs, act, nxt)
    states = states.replace(normalizer=jax.tree.map(lambda x: jnp.stack([x, x]), norm))
    variants = [
        {
            "name": f"h{h}-b64-s0",
            "hidden_dim": h,
            "buffer_size": 64,
            "seed": 0,
            "bucket": "w8",
            "index": i,
            "max_width": 8,
            "mask": [1] * h + [0] * (8 - h),
            "val_mse": v,
        }
        for i, (h, v) in enumerate([(5, 0.2), (8, 0.1)])
    ]
    meta = {
        "config": {},
        "env": "toy",
        "obs_dim": OBS,
        "act_dim": ACT,
        "num_layers": 2,
        "variants": variants,
    }
    with ckpt.SweepCheckpointer(run_dir / "checkpoints") as saver:
        saver.save(0, arrays=ckpt.world_model_arrays({"w8": states}), meta=meta)

    def expected(index, o, a):
        return np.asarray(wm.predict_delta(jax.tree.map(lambda x: x[index], states), o, a))

    return run_dir, expected


def _main(argv, capsys):
    code = infer.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_single_sample_prints_delta_and_next_obs(run, capsys):
    run_dir, expected = run
    code, out, err = _main([run_dir, "--obs", "0.1,-0.2,0.3", "--action", "0.5, -1"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["variant"], doc["hidden_dim"], doc["step"]) == ("h8-b64-s0", 8, 0)  # best
    obs, act = np.array([0.1, -0.2, 0.3], np.float32), np.array([0.5, -1.0], np.float32)
    want = expected(1, obs, act)
    np.testing.assert_allclose(doc["delta"], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(doc["next_obs"], obs + want, rtol=1e-5, atol=1e-6)


def test_batch_files_npy_and_csv_with_out_file(run, tmp_path, capsys):
    run_dir, expected = run
    rng = np.random.default_rng(1)
    obs = rng.normal(size=(4, OBS)).astype(np.float32)
    act = rng.uniform(-1, 1, (4, ACT)).astype(np.float32)
    np.save(tmp_path / "obs.npy", obs)
    np.savetxt(tmp_path / "act.csv", act, delimiter=",")
    out_path = tmp_path / "pred" / "out.json"
    code, out, err = _main(
        [
            run_dir,
            "--variant",
            "h5-b64-s0",
            "--obs-file",
            tmp_path / "obs.npy",
            "--action-file",
            tmp_path / "act.csv",
            "--out",
            out_path,
        ],
        capsys,
    )
    assert code == 0, err
    assert out == ""
    doc = json.loads(out_path.read_text())
    assert (doc["variant"], doc["hidden_dim"]) == ("h5-b64-s0", 5)
    want = expected(0, obs, act.astype(np.float64).astype(np.float32))
    np.testing.assert_allclose(doc["delta"], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(doc["next_obs"], obs + want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--obs", "0.1,0.2", "--action", "0,0"], "--obs: expected 3 values"),
        (["--obs", "0.1,abc,0.3", "--action", "0,0"], "--obs: 'abc' is not a number"),
        (["--obs", "0.1,0.2,0.3", "--action", "0,0,1"], "--action: expected 2 values"),
        (["--obs", "0.1,nan,0.3", "--action", "0,0"], "--obs: values must be finite"),
        (["--obs", "0.1,0.2,0.3", "--action", "1e39,0"], "--action: values must be finite float32 numbers"),
        (["--obs", "0.1,0.2,0.3"], "--obs and --action must be given together"),
        (["--obs", "1,2,3", "--action", "0,0", "--variant", "h99"], "unknown variant 'h99'"),
        (
            ["--obs-file", "missing.npy", "--action-file", "a.csv"],
            "--obs-file: missing.npy: no such file",
        ),
        (["--obs", "1,2,3", "--action", "0,0", "--step", "9"], "no checkpoint at step 9"),
        ([], "give --obs and --action"),
    ],
)
def test_bad_input_is_one_line_with_status_2(run, capsys, args, needle):
    code, out, err = _main([run[0], *args], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and needle in err, err


def test_bad_files(run, tmp_path, capsys):
    (tmp_path / "obs.csv").write_text("1,2,3\n4,x,6\n")
    (tmp_path / "act.csv").write_text("0,0\n0,0\n")
    (tmp_path / "act3.csv").write_text("0,0\n0,0\n0,0\n")
    (tmp_path / "obs.txt").write_text("1,2,3\n")
    np.save(tmp_path / "good.npy", np.zeros((2, OBS), np.float32))
    np.save(tmp_path / "huge.npy", np.full((2, OBS), 1e300))
    cases = [
        (
            ["--obs-file", tmp_path / "huge.npy", "--action-file", tmp_path / "act.csv"],
            f"--obs-file: {tmp_path / 'huge.npy'}: values must be finite float32 numbers",
        ),
        (
            ["--obs-file", tmp_path / "obs.csv", "--action-file", tmp_path / "act.csv"],
            f"--obs-file: {tmp_path / 'obs.csv'}: cannot read numbers",
        ),
        (
            ["--obs-file", tmp_path / "good.npy", "--action-file", tmp_path / "act3.csv"],
            "3 rows, but --obs-file has 2",
        ),
        (
            ["--obs-file", tmp_path / "obs.txt", "--action-file", tmp_path / "act.csv"],
            "expected a .npy or .csv file",
        ),
    ]
    for args, needle in cases:
        code, out, err = _main([run[0], *args], capsys)
        assert code == 2 and out == "" and err.count("\n") == 1 and needle in err, err
    code, _, err = _main([tmp_path / "no_run", "--obs", "1,2,3", "--action", "0,0"], capsys)
    assert code == 2 and "no such run directory" in err


def test_module_entry_point(run):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    cmd = [
        sys.executable,
        "-m",
        "augnes_jax.infer",
        str(run[0]),
        "--obs",
        "1,0,0",
        "--action",
        "0,1",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    want = run[1](1, np.array([1, 0, 0], np.float32), np.array([0, 1], np.float32))
    np.testing.assert_allclose(doc["delta"], want, rtol=1e-5, atol=1e-6)
    assert doc["variant"] == "h8-b64-s0" and proc.stderr == ""
