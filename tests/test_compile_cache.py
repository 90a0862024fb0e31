"""The persistent compilation cache: where it lives, that sweeps hit it, and that damage is harmless.

The sweeps run in subprocesses, each with its own cache directory (not the session's shared
one), so what a run finds in its cache is exactly what an earlier run here wrote. The warm runs
use a copy of the cold run's cache at another path: keys do not depend on the location. JAX's
own debug log of ``jax._src.compiler`` says which programs came from the cache.
"""

import ast
import os
import re
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from augnes_jax import compile_cache
from augnes_jax.config import ConfigError, load_config
from tests.sweep_configs import TINY
from tests.test_resume import artifacts, assert_same

CFG = [x for x in TINY if not x.startswith("epochs=")] + ["epochs=1"]
HIT = re.compile(r"Persistent compilation cache hit for '[^']*' with key '([^']+)'")
READ_ERROR = "Error reading persistent compilation cache entry"


def entries(cache: Path) -> dict[str, bytes]:
    """Returns the cache's entries by key (file name without JAX's ``-cache`` suffix)."""
    return {p.name.removesuffix("-cache"): p.read_bytes() for p in sorted(cache.glob("*-cache"))} if cache.exists() else {}


def run_sweep(run_dir: Path, cache: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_DEBUG_LOG_MODULES="jax._src.compiler",
               JAX_NUMPY_RANK_PROMOTION="raise", JAX_DEBUG_KEY_REUSE="true")
    env[compile_cache.ENV_VAR] = str(cache)
    for var in ("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES",
                "JAX_PERSISTENT_CACHE_ENABLE_XLA_CACHES"):
        env.pop(var, None)  # the defaults of augnes_jax.compile_cache
    cmd = [sys.executable, "-m", "augnes_jax.sweep", "--no-progress", "--run-dir", str(run_dir), *CFG, *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def cold(tmp_path_factory):
    """A sweep into an empty cache directory: returns (run dir, cache dir, its entries)."""
    root = tmp_path_factory.mktemp("cold")
    res = run_sweep(root / "run", root / "cache")
    assert res.returncode == 0, res.stderr[-2000:]
    written = entries(root / "cache")
    assert written, "the cold run wrote no cache entry"
    # the cache started empty: a program can only be found if this run stored it earlier on
    assert set(HIT.findall(res.stderr)) <= set(written)
    for data in written.values():
        zlib.decompress(data)  # whole entries (JAX compresses with zlib here)
    return root / "run", root / "cache", written


def test_second_sweep_loads_every_entry_and_gives_identical_artifacts(cold, tmp_path):
    run_dir, _, written = cold
    cache = tmp_path / "cache"
    shutil.copytree(cold[1], cache)
    res = run_sweep(tmp_path / "run", cache)
    assert res.returncode == 0, res.stderr[-2000:]
    hits = set(HIT.findall(res.stderr))
    assert set(written) <= hits  # every program the cold run stored came from the cache
    assert {k: v for k, v in entries(cache).items() if k in written} == written  # and none was rewritten
    assert_same(artifacts(run_dir), artifacts(tmp_path / "run"))


def test_truncated_entries_are_recompiled_and_the_result_is_identical(cold, tmp_path):
    run_dir, _, written = cold
    cache = tmp_path / "cache"
    shutil.copytree(cold[1], cache)
    keys = sorted(written)
    old, fresh = keys[::2], keys[1::2]
    for k in keys:
        p = cache / f"{k}-cache"
        p.write_bytes(written[k][: len(written[k]) // 2])
    past = time.time() - 10 * compile_cache.SETTLE_S
    for k in old:  # cut short long ago (a killed writer): removed at start and written again
        os.utime(cache / f"{k}-cache", (past, past))
    res = run_sweep(tmp_path / "run", cache)
    assert res.returncode == 0, res.stderr[-2000:]
    assert_same(artifacts(run_dir), artifacts(tmp_path / "run"))
    # a damaged entry is never loaded (an old one may be, once this run has written it again)
    assert not set(HIT.findall(res.stderr)) & set(fresh)
    if fresh:  # cut short just now (maybe still being written): JAX's own read fails, it compiles
        assert READ_ERROR in res.stderr
    after = entries(cache)
    # removed, then whole again where this run stored it (a fresh compilation: not always the same
    # bytes); a program that now compiles under the cache's minimum time is not stored again
    rewritten = [k for k in old if k in after]
    assert rewritten
    for k in rewritten:
        zlib.decompress(after[k])
    for k in fresh:
        assert after[k] == written[k][: len(written[k]) // 2]  # JAX never overwrites a key


def test_compile_cache_off_writes_nothing_even_with_the_variable_set(tmp_path):
    cache = tmp_path / "cache"
    res = run_sweep(tmp_path / "run", cache, "compile_cache=off", "planner.random_collect_epochs=1")
    assert res.returncode == 0, res.stderr[-2000:]
    assert entries(cache) == {}
    assert (tmp_path / "run" / "judgments.jsonl").is_file()


@pytest.mark.parametrize("value", ["''", "' auto'", "on", "1"])
def test_bad_value_is_exit_2_with_one_line(tmp_path, value):
    cmd = [sys.executable, "-m", "augnes_jax.sweep", "--run-dir", str(tmp_path / "run"), f"compile_cache={value}"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "compile_cache" in lines[0], res.stderr
    assert not (tmp_path / "run").exists()


def test_a_file_in_the_way_is_exit_2_naming_the_key(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cmd = [sys.executable, "-m", "augnes_jax.sweep", "--run-dir", str(tmp_path / "run"), f"compile_cache={blocker}"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    assert res.stderr.strip() == f"augnes_jax.sweep: error: config error: compile_cache: {blocker} exists and is not a directory"
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- in this process


def test_resolve_follows_the_setting_then_the_variable_then_the_user_cache(monkeypatch, tmp_path):
    import platformdirs

    monkeypatch.setenv(compile_cache.ENV_VAR, str(tmp_path / "env"))
    assert compile_cache.resolve("auto") == tmp_path / "env"
    assert compile_cache.resolve(str(tmp_path / "given")) == tmp_path / "given"
    assert compile_cache.resolve("off") is None
    monkeypatch.delenv(compile_cache.ENV_VAR)
    assert compile_cache.resolve("auto") == Path(platformdirs.user_cache_dir("augnes_jax")) / "xla"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert compile_cache.resolve("~/c") == tmp_path / "home" / "c"


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """This process's cache pointed at an empty directory (stores every program); the session's after."""
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    before = jax.config.jax_persistent_cache_min_compile_time_secs
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    try:
        yield tmp_path / "cache"
    finally:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", before)
        monkeypatch.undo()
        compile_cache.configure("auto")


def _program(scale: float):
    # a program of its own per test: nothing compiled earlier in the session shares its key
    return jax.jit(lambda x: jnp.tanh(x * scale).sum())


def test_configure_in_process_writes_entries_and_off_stops_writing(fresh_cache):
    assert compile_cache.configure(str(fresh_cache)) == fresh_cache.resolve()
    assert float(_program(1.2345)(jnp.ones(3))) == pytest.approx(3 * float(jnp.tanh(1.2345)))
    first = entries(fresh_cache)
    assert [k for k in first if k.startswith("jit__lambda-")]  # the program is stored, under its name
    x = jnp.ones(3)
    assert compile_cache.configure("off") is None
    _program(2.5)(x).block_until_ready()
    assert entries(fresh_cache) == first
    assert compile_cache.configure(str(fresh_cache)) == fresh_cache.resolve()  # on again: it writes
    _program(3.5)(x).block_until_ready()
    assert len(entries(fresh_cache)) == len(first) + 1


def test_remove_damaged_entries_keeps_whole_and_recent_ones(tmp_path):
    whole, cut, recent = (tmp_path / f"{n}-cache" for n in ("whole", "cut", "recent"))
    data = zlib.compress(b"\0\0\0\1" + bytes(range(256)) * 64)
    whole.write_bytes(data)
    cut.write_bytes(data[:-10])
    recent.write_bytes(data[:-10])
    past = time.time() - 2 * compile_cache.SETTLE_S
    for p in (whole, cut):
        os.utime(p, (past, past))
    assert compile_cache.remove_damaged_entries(tmp_path) == ["cut-cache"]
    assert whole.read_bytes() == data and recent.exists() and not cut.exists()


def test_config_key_defaults_to_auto_and_names_itself_when_bad(tmp_path):
    assert load_config(None, []).compile_cache == "auto"
    # YAML 1.1 reads a bare off as false, quoted it stays a string: both mean off
    assert load_config(None, ["compile_cache=off"]).compile_cache is False
    assert load_config(None, ["compile_cache='off'"]).compile_cache == "off"
    assert compile_cache.resolve(False) is None and compile_cache.resolve("off") is None
    assert load_config(None, [f"compile_cache={tmp_path}"]).compile_cache == str(tmp_path)
    with pytest.raises(ConfigError, match=r"^config error: compile_cache: must be auto, off or a directory"):
        load_config(None, ["compile_cache=true"])
    with pytest.raises(ConfigError, match=r"^config error: compile_cache: must be auto, off or a directory"):
        load_config(None, ["compile_cache=''"])


def test_keys_do_not_depend_on_where_the_cache_lives(fresh_cache):
    names = []
    for d in (fresh_cache / "a", fresh_cache / "somewhere_else"):
        compile_cache.configure(str(d))
        _program(4.5)(jnp.ones(3)).block_until_ready()
        names.append({k for k in entries(d) if k.startswith("jit__lambda-")})
    assert names[0] and names[0] == names[1]


SHARED_PROGRAMS = """
import sys
import numpy as np
from augnes_jax import compile_cache
compile_cache.configure(sys.argv[1])
import jax, jax.numpy as jnp
x = np.linspace(-1.0, 1.0, 64 * 64, dtype=np.float32).reshape(64, 64)
out = [float(jax.jit(lambda a, i=i: (jnp.sin(a * (i + 1)) @ a).sum())(x)) for i in range(12)]
print(repr(out))
"""


def test_processes_sharing_one_cache_get_right_values_and_leave_it_usable(tmp_path):
    import numpy as np

    cache = tmp_path / "cache"
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    cmd = [sys.executable, "-c", SHARED_PROGRAMS, str(cache)]
    x = np.linspace(-1.0, 1.0, 64 * 64, dtype=np.float32).reshape(64, 64).astype(np.float64)
    want = [float((np.sin(x * (i + 1)) @ x).sum()) for i in range(12)]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
        np.testing.assert_allclose(ast.literal_eval(out), want, rtol=1e-4, atol=1e-2)
    written = entries(cache)
    assert len([k for k in written if k.startswith("jit__lambda-")]) == 12
    compile_cache.remove_damaged_entries(cache, settle_s=0)  # what a later start removes
    for data in entries(cache).values():
        zlib.decompress(data)
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    np.testing.assert_allclose(ast.literal_eval(res.stdout), want, rtol=1e-4, atol=1e-2)
