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
