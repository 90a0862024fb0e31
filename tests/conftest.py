"""Test-wide JAX settings: loud shape bugs, key-reuse checks, one CPU thread pool, one compile cache.

The tests run in pytest-xdist workers (``-n auto``, at most 4; ``-n 0`` runs them in one
process). Each worker's session has one persistent compilation cache in a temporary directory:
the worker uses it, and ``JAX_COMPILATION_CACHE_DIR`` hands it to every subprocess it starts
(sweeps, ``infer``, the multi-device scripts), so a program is compiled once per worker rather
than once per subprocess. A test that measures compilation itself takes the
``no_compile_cache`` fixture.

``tiny_sweep`` (``TINY``) and ``auto_sweep`` (``AUTO``, widths grown live) are sweeps run once per
worker session, in the worker, read by every test that only checks what such a run writes (they
must not write into them).
"""

import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

from augnes_jax import compile_cache  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_debug_key_reuse", True)

# set at import, before any test module compiles anything or starts a subprocess
SESSION_CACHE = tempfile.mkdtemp(prefix="augnes_jax_xla_cache_")
os.environ[compile_cache.ENV_VAR] = SESSION_CACHE
compile_cache.configure("auto")


def pytest_unconfigure(config):
    shutil.rmtree(SESSION_CACHE, ignore_errors=True)


@pytest.fixture
def no_compile_cache():
    """Runs a test without the persistent cache (in this process and its subprocesses)."""
    os.environ.pop(compile_cache.ENV_VAR, None)
    compile_cache.configure("off")
    try:
        yield
    finally:
        os.environ[compile_cache.ENV_VAR] = SESSION_CACHE
        compile_cache.configure("auto")


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory):
    """One in-process sweep of ``TINY`` shared by the session: (config, run directory, summary).

    Read-only for its users: a test that changes a run works on a copy (``shutil.copytree``).
    """
    from augnes_jax.config import load_config
    from augnes_jax.sweep import Sweep
    from tests.sweep_configs import TINY

    run_dir = tmp_path_factory.mktemp("tiny_sweep") / "tiny"
    cfg = load_config(None, TINY)
    summary = Sweep(cfg, run_dir, progress=False).run()
    return cfg, run_dir, summary


@pytest.fixture(scope="session")
def auto_sweep(tmp_path_factory):
    """One in-process sweep of ``AUTO`` (capacity_mode=auto) shared by the session: its run directory.

    Read-only for its users, like ``tiny_sweep``.
    """
    from augnes_jax.config import load_config
    from augnes_jax.sweep import Sweep
    from tests.sweep_configs import AUTO

    run_dir = tmp_path_factory.mktemp("auto_sweep") / "auto"
    Sweep(load_config(None, AUTO), run_dir, progress=False).run()
    return run_dir
