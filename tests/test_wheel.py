"""A wheel install behaves like the checkout: it ships the configs and loads the same default."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from augnes_jax.config import CONFIG_DIR, load_config, to_dict

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(out)],
        capture_output=True, text=True, timeout=240)
    if build.returncode != 0:
        last = (build.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"cannot build a wheel here (pip needs setuptools>=77 from the index): {last}")
    (path,) = out.glob("augnes_jax-*.whl")
    return path


@pytest.mark.timeout(300)
def test_the_wheel_ships_every_config_and_loads_the_checkouts_default(wheel, tmp_path):
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(n.rsplit("/", 1)[1] for n in names if n.startswith("augnes_jax/configs/"))
    assert shipped == sorted(p.name for p in CONFIG_DIR.glob("*.yaml"))

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=240)
    code = ("import json, augnes_jax.config as c\n"
            "print(json.dumps({'file': c.__file__, 'cfg': c.to_dict(c.load_config())}))")
    # run from outside the checkout, with the wheel's copy first on the path
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(got["file"]).is_relative_to(target)
    assert got["cfg"] == to_dict(load_config())
    assert got["cfg"]["meta"]["epsilon"] == load_config().meta.epsilon


@pytest.mark.timeout(600)
def test_a_fresh_venv_with_the_wheel_runs_the_default_sweep_and_saves_the_checkouts_config(wheel, tmp_path):
    """``pip install`` of the wheel into a new venv outside the checkout; ``sweep epochs=1`` there."""
    import sysconfig
    import venv

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # the dependencies come from this interpreter's environment, which the new venv only appends
    # to its path: augnes_jax itself is found only as the installed wheel
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=240)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "JAX_PLATFORMS": "cpu"}
    where = subprocess.run([str(python), "-c", "import augnes_jax; print(augnes_jax.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where).is_relative_to(site)
    run = subprocess.run([str(python), "-m", "augnes_jax.sweep", "epochs=1", "--run-dir", "run", "--no-progress"],
                         cwd=work, env=env, capture_output=True, text=True, timeout=540)
    assert run.returncode == 0, run.stderr[-2000:]
    from augnes_jax.config import to_yaml

    # what a run in the checkout saves for the same command line
    assert (work / "run" / "config.yaml").read_text() == to_yaml(load_config(None, ["epochs=1"]))
    for name in ("judgments.jsonl", "strategy_stats.json", "world_model_stats.json", "decision.json"):
        assert (work / "run" / name).is_file(), name
