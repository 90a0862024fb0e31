"""Naming an environment: built-in names, names registered from Python or by installed packages,
and import paths ``package.module:factory``.

``env.name`` in a config may be any of

- a name registered in this process with :func:`register` (the built-ins ``gridworld`` and
  ``reacher`` are registered here);
- a name that an installed package publishes under the entry-point group ``augnes_jax.envs``::

      [project.entry-points."augnes_jax.envs"]
      pointmass = "my_package.envs:PointMass"

- an import path ``package.module:factory``, where ``factory`` (dotted attributes allowed) is a
  class or a function returning an environment;
- ``gymnax:<id>``, any environment gymnax knows, through
  :class:`augnes_jax.envs.gymnax_adapter.GymnaxEnv` (gymnax is imported only to build it).

:func:`make` builds the environment with the config's ``env.kwargs``. :func:`import_path` says
where a factory lives, so a run can record a name that a fresh process resolves without the
code that registered it. Looking up a name never imports the environment's module except to
build it: :func:`is_known` answers from the registry, the entry-point metadata and the import
path's syntax alone.

Failures raise :class:`EnvLookupError` (a ``ValueError``) with a one-line message.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import re
from collections.abc import Callable
from typing import Any

__all__ = [
    "REGISTRY",
    "ENTRY_POINT_GROUP",
    "GYMNAX_PREFIX",
    "EnvLookupError",
    "declared_num_goals",
    "import_path",
    "is_gymnax",
    "is_import_path",
    "is_known",
    "known_names",
    "make",
    "recorded_name",
    "register",
    "resolve",
]

ENTRY_POINT_GROUP = "augnes_jax.envs"
_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")
_NAME = re.compile(r"^[A-Za-z0-9][\w.\-]*$")
GYMNAX_PREFIX = "gymnax:"
_GYMNAX_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*$")

# the registered names and their factories (a callable, or an import path loaded on first use);
# add to it with register(), which checks the name and the factory
REGISTRY: dict[str, Callable[..., Any] | str] = {
    "gridworld": "augnes_jax.envs.gridworld:GridWorld",
    "reacher": "augnes_jax.envs.reacher:Reacher",
}


class EnvLookupError(ValueError):
    """An environment name that does not resolve, or a factory that fails; one line."""


def is_import_path(name: str) -> bool:
    """Returns whether ``name`` has the shape ``package.module:factory``."""
    return bool(_IMPORT_PATH.match(name))


def register(name: str, factory: Callable[..., Any] | str, *, overwrite: bool = False) -> None:
    """Registers ``factory`` (a class, a function or an import path) under ``name``.

    Raises:
      EnvLookupError: ``name`` is not a plain name, or is taken and ``overwrite`` is False.
    """
    if not isinstance(name, str) or not _NAME.match(name) or ":" in name:
        raise EnvLookupError(f"environment name {name!r} must be letters, digits, '_', '-' or '.'")
    if isinstance(factory, str):
        if not is_import_path(factory):
            raise EnvLookupError(f"{factory!r} is not an import path package.module:factory")
    elif not callable(factory):
        raise EnvLookupError(f"the factory of {name!r} must be callable, got {type(factory).__name__}")
    if name in REGISTRY and not overwrite and REGISTRY[name] is not factory:
        raise EnvLookupError(f"environment {name!r} is already registered; pass overwrite=True to replace it")
    REGISTRY[name] = factory


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def known_names() -> list[str]:
    """Returns the registered and published environment names, sorted."""
    return sorted(set(REGISTRY) | set(_entry_points()))


def is_gymnax(name: str) -> bool:
    """Returns whether ``name`` has the shape ``gymnax:<id>`` (the id is checked when built)."""
    return (isinstance(name, str) and name.startswith(GYMNAX_PREFIX)
            and bool(_GYMNAX_ID.match(name[len(GYMNAX_PREFIX):])))


def is_known(name: str) -> bool:
    """Returns whether ``name`` resolves, without importing any environment module."""
    return isinstance(name, str) and (name in REGISTRY or is_gymnax(name) or is_import_path(name)
                                      or name in _entry_points())


def _load(path: str) -> Callable[..., Any]:
    module_name, _, attrs = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise EnvLookupError(f"{path}: cannot import {module_name} ({e})") from None
    except Exception as e:  # noqa: BLE001 - the user's module failed while importing
        raise EnvLookupError(f"{path}: importing {module_name} raised {type(e).__name__}: {e}") from None
    for attr in attrs.split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise EnvLookupError(f"{path}: {module_name} has no attribute {attrs}") from None
    if not callable(obj):
        raise EnvLookupError(f"{path}: {attrs} is not a class or function")
    return obj


def resolve(name: str) -> Callable[..., Any]:
    """Returns the factory that ``name`` stands for.

    Raises:
      EnvLookupError: unknown name, or an import path that does not import.
    """
    if not isinstance(name, str) or not name:
        raise EnvLookupError(f"environment name must be a non-empty string, got {name!r}")
    if name in REGISTRY:
        factory = REGISTRY[name]
        return _load(factory) if isinstance(factory, str) else factory
    if is_gymnax(name):
        return _gymnax_factory(name)
    if is_import_path(name):
        return _load(name)
    eps = _entry_points()
    if name in eps:
        try:
            factory = eps[name].load()
        except Exception as e:  # noqa: BLE001 - the publishing package failed while importing
            raise EnvLookupError(f"{name}: entry point {eps[name].value} raised {type(e).__name__}: {e}") from None
        if not callable(factory):
            raise EnvLookupError(f"{name}: entry point {eps[name].value} is not a class or function")
        return factory
    raise EnvLookupError(
        f"unknown environment {name!r}; registered: {', '.join(known_names())}; "
        f"or name one by import path package.module:factory")


def _gymnax_factory(name: str) -> Callable[..., Any]:
    from augnes_jax.envs.gymnax_adapter import GymnaxEnv, GymnaxOptionError

    env_id = name[len(GYMNAX_PREFIX):]

    def factory(*, goals=None, goal_field: str = "goal", params=None, make_kwargs=None):
        try:
            return GymnaxEnv(env_id, goals=goals, goal_field=goal_field, params=params, make_kwargs=make_kwargs)
        except GymnaxOptionError as e:
            raise EnvLookupError(f"{name}: {e}") from None

    factory.__qualname__ = factory.__name__ = f"gymnax({env_id})"
    return factory


def import_path(name: str) -> str | None:
    """Returns an import path a fresh process can resolve to the same factory, or None.

    Built-in names and import paths stand for themselves; a factory registered from a script
    (``__main__``) or defined inside a function has no importable path.
    """
    if is_import_path(name) or is_gymnax(name):
        return name
    factory = REGISTRY.get(name)
    if factory is None:
        eps = _entry_points()
        return eps[name].value if name in eps and is_import_path(eps[name].value) else None
    if isinstance(factory, str):
        return factory
    module, qualname = getattr(factory, "__module__", None), getattr(factory, "__qualname__", "")
    if not module or module == "__main__" or "<" in qualname:
        return None
    return f"{module}:{qualname}"


def recorded_name(name: str) -> str:
    """Returns the name a run records for ``name``: one a fresh process resolves without the
    code that registered it.

    Built-in names, gymnax ids, import paths and entry-point names stand for themselves; a name
    registered from Python becomes its factory's import path where it has one.
    """
    factory = REGISTRY.get(name)
    if factory is None or (isinstance(factory, str) and factory.startswith("augnes_jax.envs.")):
        return name
    return import_path(name) or name


def declared_num_goals(name: str, kwargs: dict[str, Any] | None = None) -> int | None:
    """Returns the goal count a registered class declares, without importing user code; else None.

    Used where a config is checked before any user module may be imported: a built-in name, or a
    class registered in this process, declares ``num_goals`` as a class attribute. With
    ``kwargs`` the count may depend on them, so None.
    """
    if is_gymnax(name):
        goals = (kwargs or {}).get("goals")
        return 1 if goals is None else (len(goals) if isinstance(goals, list | tuple) and goals else None)
    factory = REGISTRY.get(name)
    if kwargs or factory is None:
        return None
    if isinstance(factory, str):
        if not factory.startswith("augnes_jax.envs."):
            return None
        factory = _load(factory)
    goals = getattr(factory, "num_goals", None) if inspect.isclass(factory) else None
    return goals if isinstance(goals, int) and not isinstance(goals, bool) else None


def make(name: str, **kwargs: Any) -> Any:
    """Returns a new environment: the factory ``name`` stands for, called with ``kwargs``.

    Raises:
      EnvLookupError: the name does not resolve, ``kwargs`` do not fit the factory, or the
        factory raises.
    """
    factory = resolve(name)
    try:
        inspect.signature(factory).bind(**kwargs)
    except TypeError as e:
        raise EnvLookupError(f"{name}: env.kwargs do not fit the factory ({e})") from None
    except ValueError:  # a builtin without a signature: let the call decide
        pass
    try:
        env = factory(**kwargs)
    except EnvLookupError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's factory failed
        raise EnvLookupError(f"{name}: the factory raised {type(e).__name__}: {e}") from None
    if env is None:
        raise EnvLookupError(f"{name}: the factory returned None, not an environment")
    return env
