"""Config loading: defaults, YAML, overrides, and one-line errors that name the key."""

import dataclasses

import pytest

from augnes_jax.config import Config, ConfigError, config_from_dict, diff, load_config, to_dict


def test_default_yaml_and_overrides():
    cfg = load_config(None, ["epochs=2", "variants.hidden_dims=[4,16]", "env.name=gridworld", "env.goals=[0,2]"])
    assert cfg.epochs == 2
    assert cfg.variants.hidden_dims == (4, 16)
    assert cfg.env.name == "gridworld" and cfg.env.goals == (0, 2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.epochs = 3  # type: ignore[misc]
    # round trip through a plain dict (what config.yaml holds)
    assert config_from_dict(to_dict(cfg)) == cfg
    assert diff(cfg, dataclasses.replace(cfg, epochs=5)) == ["epochs"]


@pytest.mark.parametrize(
    "override, key, words",
    [
        (["nope=1"], "nope", "unknown key"),
        (["world_model.nope=1"], "world_model.nope", "unknown key"),
        (["epochs=abc"], "epochs", "wrong type"),
        (["world_model.learning_rate=fast"], "world_model.learning_rate", "wrong type"),
        (["epochs=0"], "epochs", "> 0"),
        (["samples_per_epoch=-5"], "samples_per_epoch", "> 0"),
        (["variants.hidden_dims=[]"], "variants.hidden_dims", "empty"),
        (["variants.seeds=[0,0]"], "variants.seeds", "duplicate"),
        (["variants.buffer_sizes=[0]"], "variants.buffer_sizes", "> 0"),
        (["env.goals=[]"], "env.goals", "empty"),
        (["env.goals=[99]"], "env.goals", "out of range"),
        (["env.name=atari"], "env.name", "one of"),
        (["planner.num_elites=1000"], "planner.num_elites", "exceeds"),
        (["world_model.num_layers=3"], "world_model.num_layers", "1 or 2"),
        (["alerts.webhook_url=file:///etc/passwd"], "alerts.webhook_url", "http"),
        (["run_name=../escape"], "run_name", "plain name"),
        (["epochs"], "epochs", "key=value"),
        (["compile_cache=''"], "compile_cache", "auto, off or a directory"),
        (["compile_cache=yes"], "compile_cache", "auto, off or a directory"),
        (["compile_cache=[a]"], "compile_cache", "wrong type"),
        (["compile_cache=/dev/null"], "compile_cache", "not a directory"),
    ],
)
def test_bad_values_name_the_key(override, key, words):
    with pytest.raises(ConfigError) as err:
        load_config(None, override)
    msg = str(err.value)
    assert "\n" not in msg
    assert key in msg and words in msg, msg


def test_yaml_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml line"):
        load_config(bad)
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.yaml")
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(scalar)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("planner:\n  horizn: 3\n")
    with pytest.raises(ConfigError, match="planner.horizn"):
        load_config(unknown)


def test_every_shipped_config_loads():
    from augnes_jax.config import CONFIG_DIR

    files = sorted(CONFIG_DIR.glob("*.yaml"))
    assert files
    for f in files:
        assert isinstance(load_config(f), Config)


def test_compile_cache_key_in_yaml(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("compile_cache: off\n")  # a bare off is YAML's false
    assert load_config(f).compile_cache is False
    f.write_text(f"compile_cache: {tmp_path / 'xla'}\n")
    cfg = load_config(f)
    assert cfg.compile_cache == str(tmp_path / "xla")
    assert config_from_dict(to_dict(cfg)) == cfg
    assert load_config(None).compile_cache == "auto"


@pytest.mark.parametrize("overrides, key, problem", [
    (["runs_dir=''"], "runs_dir", "must not be empty"),
    (["devices=zero"], "devices", "must be 'auto' or a positive integer"),
    (["variants.bucket_ratio=0"], "variants.bucket_ratio", "must be >= 1, got 0"),
    (["variants.capacity_mode=auto", "variants.auto_start_hidden_dim=64", "variants.auto_max_hidden_dim=32"],
     "variants.auto_max_hidden_dim", "must be >= variants.auto_start_hidden_dim"),
    (["env.episode_length=10", "world_model.k_steps=[1,20]"], "world_model.k_steps", "20 exceeds env.episode_length 10"),
    (["regret.min_goal_share=1.0"], "regret.min_goal_share", "must be in [0, 1), got 1.0"),
    (["regret.ci_level=1.0"], "regret.ci_level", "must be in (0, 1), got 1.0"),
    (["world_model.weight_decay=-0.1"], "world_model.weight_decay", "must be >= 0, got -0.1"),
])
def test_each_impossible_value_is_one_error_naming_its_key(overrides, key, problem):
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert err.value.key == key and problem in str(err.value) and "\n" not in str(err.value)
