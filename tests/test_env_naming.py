"""Naming an environment: registered names, import paths ``package.module:factory``, names that
installed packages publish under the entry-point group ``augnes_jax.envs``, ``gymnax:<id>``;
``env.kwargs`` reach the factory; every failure is one line naming what failed."""

import sys
import textwrap

import pytest

from augnes_jax.config import load_config
from augnes_jax.envs import EnvLookupError, GridWorld, make, registry
from augnes_jax.errors import ConfigError

ENV_MODULE = """
    import jax.numpy as jnp

    class Env:
        num_goals = 3
        obs_dim = 2
        action_dim = 1

        def __init__(self, scale=1.0, label="plain"):
            self.scale, self.label = scale, label

        def default_params(self, episode_length=None):
            return jnp.asarray(episode_length or 5)

        def reset(self, key, params, goal_id):
            return jnp.zeros(2), jnp.zeros((), jnp.int32)

        def step(self, key, state, action, params):
            t = state + 1
            return jnp.full(2, self.scale * t), t, -1.0, False, t >= params

    class NoStep:
        num_goals, obs_dim, action_dim = 1, 2, 1

        def default_params(self, episode_length=None):
            return None

        def reset(self, key, params, goal_id):
            return jnp.zeros(2), 0

    class Outer:
        class Inner(Env):
            num_goals = 5

    def build(scale=2.0):
        return Env(scale=scale, label="built")

    def broken(scale=1.0):
        raise RuntimeError("no simulator licence")

    def returns_none():
        return None

    NOT_CALLABLE = 3
"""


@pytest.fixture
def own_registry(monkeypatch):
    """A copy of the registry for one test, so registrations do not leak into others."""
    monkeypatch.setattr(registry, "REGISTRY", dict(registry.REGISTRY))


@pytest.fixture
def env_module(tmp_path, monkeypatch):
    """A module ``planted_envs`` on sys.path, outside the package."""
    (tmp_path / "planted_envs.py").write_text(textwrap.dedent(ENV_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "planted_envs", raising=False)
    yield tmp_path
    sys.modules.pop("planted_envs", None)


def _one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text and text
    return text


def test_built_in_names_resolve_and_stand_for_their_import_paths():
    assert isinstance(make("gridworld"), GridWorld)
    assert registry.import_path("gridworld") == "augnes_jax.envs.gridworld:GridWorld"
    assert registry.import_path("reacher") == "augnes_jax.envs.reacher:Reacher"
    assert registry.declared_num_goals("gridworld") == 4 and registry.declared_num_goals("reacher") == 8
    assert {"gridworld", "reacher"} <= set(registry.known_names())


def test_register_a_class_a_function_and_an_import_path(own_registry, env_module):
    import planted_envs

    registry.register("planted", planted_envs.Env)
    env = make("planted", scale=3.5)
    assert (type(env).__name__, env.scale, env.label) == ("Env", 3.5, "plain")
    assert registry.declared_num_goals("planted") == 3
    assert registry.declared_num_goals("planted", {"scale": 2.0}) is None  # kwargs may change the count
    assert registry.import_path("planted") == "planted_envs:Env"

    registry.register("planted-fn", planted_envs.build)
    assert (make("planted-fn").scale, make("planted-fn").label) == (2.0, "built")
    assert registry.import_path("planted-fn") == "planted_envs:build"
    assert registry.declared_num_goals("planted-fn") is None  # a function declares nothing

    registry.register("planted.path", "planted_envs:Outer.Inner")
    assert make("planted.path").num_goals == 5
    assert registry.import_path("planted.path") == "planted_envs:Outer.Inner"
    assert {"planted", "planted-fn", "planted.path"} <= set(registry.known_names())

    def local_factory():
        return planted_envs.Env()

    registry.register("planted-local", local_factory)
    assert registry.import_path("planted-local") is None  # a fresh process could not find it


def test_register_refuses_bad_names_taken_names_and_non_factories(own_registry, env_module):
    import planted_envs

    registry.register("taken", planted_envs.Env)
    registry.register("taken", planted_envs.Env)  # the same factory again is fine
    with pytest.raises(EnvLookupError) as e:
        registry.register("taken", planted_envs.build)
    assert _one_line(e) == "environment 'taken' is already registered; pass overwrite=True to replace it"
    registry.register("taken", planted_envs.build, overwrite=True)
    assert make("taken").label == "built"
    with pytest.raises(EnvLookupError) as e:
        registry.register("a:b", planted_envs.Env)
    assert "must be letters, digits" in _one_line(e)
    with pytest.raises(EnvLookupError) as e:
        registry.register("three", 3)
    assert _one_line(e) == "the factory of 'three' must be callable, got int"
    with pytest.raises(EnvLookupError) as e:
        registry.register("text", "not a path")
    assert _one_line(e) == "'not a path' is not an import path package.module:factory"


def test_import_paths_resolve_without_registration_and_pass_kwargs(env_module):
    assert registry.is_import_path("planted_envs:Outer.Inner")
    env = make("planted_envs:Env", scale=0.5, label="x")
    assert (env.scale, env.label) == (0.5, "x")
    assert make("planted_envs:build", scale=4.0).scale == 4.0
    assert make("planted_envs:Outer.Inner").num_goals == 5
    assert registry.import_path("planted_envs:build") == "planted_envs:build"
    assert registry.declared_num_goals("planted_envs:Env") is None  # never imports user code


def test_is_known_does_not_import_the_module(env_module):
    assert registry.is_known("planted_envs:Env") and registry.is_known("gymnax:Pendulum-v1")
    assert "planted_envs" not in sys.modules
    assert not registry.is_known("planted_envs") and not registry.is_known("gymnax:") and not registry.is_known("")


@pytest.mark.parametrize(("name", "kwargs", "message"), [
    ("planted_nowhere:Env", {}, "planted_nowhere:Env: cannot import planted_nowhere (No module named 'planted_nowhere')"),
    ("planted_envs:Missing", {}, "planted_envs:Missing: planted_envs has no attribute Missing"),
    ("planted_envs:NOT_CALLABLE", {}, "planted_envs:NOT_CALLABLE: NOT_CALLABLE is not a class or function"),
    ("planted_envs:broken", {}, "planted_envs:broken: the factory raised RuntimeError: no simulator licence"),
    ("planted_envs:returns_none", {}, "planted_envs:returns_none: the factory returned None, not an environment"),
    ("planted_envs:Env", {"mass": 2.0}, "planted_envs:Env: env.kwargs do not fit the factory (got an unexpected keyword argument 'mass')"),
    ("nope", {}, "unknown environment 'nope'; registered: "),
])
def test_each_lookup_failure_is_one_line(env_module, name, kwargs, message):
    with pytest.raises(EnvLookupError) as e:
        make(name, **kwargs)
    assert _one_line(e).startswith(message)


def test_a_module_that_raises_while_importing_is_one_line(env_module):
    (env_module / "planted_raising.py").write_text("raise ImportError('needs mujoco')\n")
    (env_module / "planted_crashing.py").write_text("1 / 0\n")
    with pytest.raises(EnvLookupError) as e:
        make("planted_raising:Env")
    assert _one_line(e) == "planted_raising:Env: cannot import planted_raising (needs mujoco)"
    with pytest.raises(EnvLookupError) as e:
        make("planted_crashing:Env")
    assert _one_line(e) == "planted_crashing:Env: importing planted_crashing raised ZeroDivisionError: division by zero"
    sys.modules.pop("planted_raising", None)
    sys.modules.pop("planted_crashing", None)


def _dist_info(root, entry_points: str):
    info = root / "planted_pkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: planted-pkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


def test_an_installed_package_publishes_names_by_entry_point(env_module):
    _dist_info(env_module, """
        [augnes_jax.envs]
        planted-ep = planted_envs:Env
        planted-ep-broken = planted_ep_missing:Env
    """)
    assert {"planted-ep", "planted-ep-broken"} <= set(registry.known_names())
    assert registry.is_known("planted-ep") and "planted_envs" not in sys.modules
    assert registry.import_path("planted-ep") == "planted_envs:Env"
    env = make("planted-ep", scale=7.0)
    assert (type(env).__name__, env.scale) == ("Env", 7.0)
    with pytest.raises(EnvLookupError) as e:
        make("planted-ep-broken")
    assert _one_line(e).startswith("planted-ep-broken: entry point planted_ep_missing:Env raised ModuleNotFoundError")


def test_config_accepts_import_paths_and_gymnax_names_and_checks_their_goals(env_module):
    cfg = load_config(overrides=["env.name=planted_envs:Env", "env.kwargs.scale=2.5", "env.goals=[0,7]"])
    assert cfg.env.kwargs == {"scale": 2.5} and "planted_envs" not in sys.modules  # checked later, when built
    cfg = load_config(overrides=["env.name=gymnax:FourRooms-misc", "env.kwargs.goals=[[2,2],[2,10]]", "env.goals=[1]"])
    assert cfg.env.kwargs["goals"] == [[2, 2], [2, 10]]
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["env.name=gymnax:Pendulum-v1", "env.goals=[0,1]"])
    assert _one_line(e) == "config error: env.goals: goal ids [1] out of range: gymnax:Pendulum-v1 has 1 goals"
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["env.name=planted_envs"])
    assert _one_line(e).startswith("config error: env.name: must be one of gridworld, reacher")


def test_the_sweep_builds_the_env_with_its_kwargs_and_records_a_name_a_fresh_process_resolves(
        own_registry, env_module):
    import planted_envs

    from augnes_jax.sweep_setup import build_env

    registry.register("planted", planted_envs.build)
    env, cfg = build_env(load_config(None, ["env.name=planted", "env.kwargs.scale=3.0"]))
    assert (env.scale, env.label) == (3.0, "built")
    assert cfg.env.name == "planted_envs:build"  # what config.yaml and the checkpoint record
    assert make(cfg.env.name, **cfg.env.kwargs).scale == 3.0
    assert build_env(load_config(None, []))[1].env.name == "reacher"  # built-ins keep their names

    env, cfg = build_env(load_config(None, []), planted_envs.Env(scale=5.0))
    assert env.scale == 5.0 and cfg.env.name == "planted_envs:Env"

    with pytest.raises(ConfigError, match=r"^config error: env\.kwargs: .*nope"):
        build_env(load_config(None, ["env.name=planted_envs:Env", "env.kwargs.nope=1"]))
    with pytest.raises(ConfigError, match=r"^config error: env\.goals: goal ids \[3\] out of range"):
        build_env(load_config(None, ["env.name=planted_envs:Env", "env.goals=[3]"]))
    with pytest.raises(ConfigError, match=r"^config error: env\.name: planted_envs:broken: the factory raised"):
        build_env(load_config(None, ["env.name=planted_envs:broken"]))
    with pytest.raises(ConfigError, match=r"^config error: env\.name: planted_envs:NoStep: step is missing"):
        build_env(load_config(None, ["env.name=planted_envs:NoStep"]))
