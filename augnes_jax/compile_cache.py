"""Where JAX keeps compiled programs between processes: the persistent compilation cache.

Every command that compiles (``sweep``, ``infer``, the benchmarks) calls :func:`configure` once,
before anything is compiled. The config key ``compile_cache`` chooses the directory:

- ``auto`` (default): ``$JAX_COMPILATION_CACHE_DIR`` when it is set, else
  ``platformdirs.user_cache_dir("augnes_jax")/xla`` (``~/.cache/augnes_jax/xla`` on Linux);
- ``off``: no persistent cache, even when ``$JAX_COMPILATION_CACHE_DIR`` is set;
- any other value: that directory (``~`` expanded), created when missing.

What JAX guarantees (jax 0.10, ``jax/_src/cache_key.py``, ``compilation_cache.py``,
``lru_cache.py``, ``compiler.py``):

- **Keying.** An entry's file name is a hash of the lowered program (StableHLO, without source
  locations), the jaxlib version, the backend's platform and platform version, ``XLA_FLAGS``,
  the serialized compile options, the device topology (device kind and count) and the
  compression. A jax upgrade, another device kind or other XLA flags therefore never load an
  old entry: they miss and compile. JAX's default also adds a GPU autotuning cache under the
  cache directory to the compile options, which puts the directory's path into every key;
  :func:`configure` turns that off, so a cache keeps hitting when it is moved or copied.
- **Damaged entries.** JAX wraps every cache read in ``try``: an entry that does not decompress
  or deserialize is reported as a ``UserWarning`` ("Error reading persistent compilation cache
  entry") and the program is compiled as if the cache had missed. It is never rewritten,
  though (an existing key is left alone), so :func:`configure` removes entries that no longer
  decompress; the next compilation writes them again. Entries are zlib streams with a
  checksum here, so truncation and corruption are both detected.
- **Two processes.** An entry is written once per key (skipped when the file exists) and never
  modified; only process 0 of a multi-process run writes. Without a size bound JAX takes no
  lock and writes in place: a reader that meets an entry another process is still writing sees
  a short file, warns and compiles, and two processes that compile the same program at the same
  moment can leave one file of both writes (two compilations of one program need not give the
  same bytes). Either way the zlib checksum fails, so such a file is a damaged entry as
  above: never loaded, removed by the next :func:`configure`. The removal skips entries younger
  than :data:`SETTLE_S`, so it never touches one that is still being written.
- **Size.** JAX bounds the cache (``jax_compilation_cache_max_size``, least recently used out)
  only with the ``filelock`` package installed; without it the setting disables the cache. The
  cache is not bounded here; clear it by deleting the directory (``rm -rf`` the path that
  :func:`resolve` returns); the next run starts cold.

The cache is trusted code: whoever can write to the directory can run code in the process that
loads it. Do not point it at a directory other users can write to.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from augnes_jax.errors import ConfigError

__all__ = ["ENV_VAR", "MIN_COMPILE_TIME_S", "SETTLE_S", "CompileCacheError", "configure",
           "remove_damaged_entries", "resolve", "setting_problem"]

log = logging.getLogger("augnes_jax.compile_cache")

ENV_VAR = "JAX_COMPILATION_CACHE_DIR"
MIN_COMPILE_TIME_S = 0.2  # programs that compile faster than this are not worth a file
SETTLE_S = 60.0  # an entry younger than this may still be being written by another process
_MIN_TIME_ENV = "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"
_MIN_SIZE_ENV = "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"
_XLA_CACHES_ENV = "JAX_PERSISTENT_CACHE_ENABLE_XLA_CACHES"
_ENTRY_SUFFIX = "-cache"


class CompileCacheError(ConfigError):
    """A bad ``compile_cache`` value or an unusable cache directory; one line naming the key."""

    def __init__(self, problem: str):
        super().__init__("compile_cache", problem)


def setting_problem(value) -> str | None:
    """Returns what is wrong with a ``compile_cache`` value, or None for auto, off or a directory.

    ``False`` counts as ``off``: a bare ``off`` in YAML or a ``key=value`` override arrives so.
    """
    usage = f"must be auto, off or a directory path, got {value!r}"
    if value is False:  # YAML 1.1, which the config files and overrides follow, reads off as false
        return None
    if not isinstance(value, str) or not value.strip():
        return usage
    if value != value.strip() or any(c in value for c in "\n\r\x00"):
        return usage
    if value not in ("auto", "off"):
        path = Path(value).expanduser()
        if path.exists() and not path.is_dir():
            return f"{value} exists and is not a directory"
    return None


def resolve(setting: str | bool = "auto") -> Path | None:
    """Returns the cache directory that ``setting`` names, or None for ``off`` (or ``False``)."""
    problem = setting_problem(setting)
    if problem:
        raise CompileCacheError(problem)
    if setting is False or setting == "off":
        return None
    if setting == "auto":
        env = os.environ.get(ENV_VAR, "").strip()
        if env:
            return Path(env).expanduser()
        import platformdirs

        return Path(platformdirs.user_cache_dir("augnes_jax")) / "xla"
    return Path(setting).expanduser()


def remove_damaged_entries(path: Path, *, settle_s: float = SETTLE_S) -> list[str]:
    """Removes cache entries under ``path`` that no longer decompress; returns their file names.

    An entry cut short (a writer killed mid-write, a full disk) would otherwise be read, fail
    and be compiled again on every run, since JAX never overwrites an existing key. Entries
    modified in the last ``settle_s`` seconds are left alone: another process may be writing them.
    """
    try:
        from jax._src.compilation_cache import decompress_executable
    except ImportError:  # a jax without it: JAX still recompiles damaged entries, only slower
        return []
    removed = []
    now = time.time()
    for entry in sorted(path.glob(f"*{_ENTRY_SUFFIX}")):
        try:
            if now - entry.stat().st_mtime < settle_s:
                continue
            decompress_executable(entry.read_bytes())
        except OSError:
            continue  # gone meanwhile (another process removed it) or unreadable: JAX will say so
        except Exception:  # noqa: BLE001 - zlib.error, zstd errors: the entry is damaged
            try:
                entry.unlink()
            except OSError:
                continue
            removed.append(entry.name)
    if removed:
        log.warning("removed %d damaged compilation cache entr%s from %s", len(removed),
                    "y" if len(removed) == 1 else "ies", path)
    return removed


def configure(setting: str | bool = "auto") -> Path | None:
    """Points JAX's persistent compilation cache at the directory ``setting`` names; returns it.

    Call before anything compiles. ``off`` (returns None) disables the cache for this process.
    Unless the environment sets ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS``,
    ``JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES`` or ``JAX_PERSISTENT_CACHE_ENABLE_XLA_CACHES``,
    programs that compile in under :data:`MIN_COMPILE_TIME_S` are not stored, there is no
    minimum entry size, and no XLA-internal cache goes with it (see the module docstring).

    Under ``auto`` a directory that cannot be created is a warning and no cache.

    Raises:
      CompileCacheError: a bad setting, or a given directory that cannot be created.
    """
    import jax
    from jax.experimental.compilation_cache import compilation_cache as jax_cache

    path = resolve(setting)
    current = jax.config.jax_compilation_cache_dir
    if path is None:
        if current is not None or jax.config.jax_enable_compilation_cache:
            jax.config.update("jax_enable_compilation_cache", False)
            jax.config.update("jax_compilation_cache_dir", None)
            jax_cache.reset_cache()
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if setting != "auto":
            raise CompileCacheError(f"cannot create {path}: {e.strerror or e}") from None
        # the default location is a convenience: without it the command runs, only compiles
        log.warning("no compilation cache: cannot create %s: %s", path, e.strerror or e)
        return configure("off")
    path = path.resolve()
    if _MIN_TIME_ENV not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_TIME_S)
    if _MIN_SIZE_ENV not in os.environ:
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # -1: no minimum, no override
    if _XLA_CACHES_ENV not in os.environ:
        # JAX's default puts <dir>/xla_gpu_per_fusion_autotune_cache_dir into the compile options,
        # which are part of every key: a cache moved or copied elsewhere would never hit
        jax.config.update("jax_persistent_cache_enable_xla_caches", None)
    if current != str(path) or not jax.config.jax_enable_compilation_cache:
        jax.config.update("jax_enable_compilation_cache", True)
        jax.config.update("jax_compilation_cache_dir", str(path))
        jax_cache.reset_cache()  # JAX opens its cache once; a new directory needs a fresh one
    remove_damaged_entries(path)
    return path
