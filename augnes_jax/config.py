"""Config schema, YAML loading, ``key=value`` overrides and validation.

The schema is a tree of frozen dataclasses. Values come from the schema defaults, then a YAML
file (``configs/default.yaml`` unless another is given), then ``key=value`` overrides, merged by
OmegaConf structured configs. Any problem raises :class:`ConfigError` whose message is one line
that names the offending key; command-line entry points turn it into exit status 2.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from augnes_jax.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"  # package data: a wheel ships it too
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


@dataclass(frozen=True)
class EnvConfig:
    """Which environment, which of its goals, and how long an episode lasts."""

    name: str = "reacher"  # a registered name, or an import path package.module:factory
    goals: tuple[int, ...] | None = None  # None: every goal of the environment
    episode_length: int = 50
    kwargs: dict[str, Any] = field(default_factory=dict)  # passed to the environment's factory


@dataclass(frozen=True)
class VariantsConfig:
    """The capacity grid: every (num_layers, hidden_dim, buffer_size, seed) combination is one variant."""

    hidden_dims: tuple[int, ...] = (8, 32, 128)
    # depths (hidden layers, 1 or 2) swept beside the widths; None: world_model.num_layers alone
    num_layers: tuple[int, ...] | None = None
    buffer_sizes: tuple[int, ...] = (10000,)
    seeds: tuple[int, ...] = (0, 1)
    bucket_ratio: int = 4  # widths within this ratio of a bucket's max share one vmap
    capacity_mode: str = "fixed"  # fixed | auto (grow on the controller's "expand")
    auto_start_hidden_dim: int = 8
    auto_max_hidden_dim: int = 256


@dataclass(frozen=True)
class WorldModelConfig:
    """The Δs MLP and its optimizer."""

    num_layers: int = 2
    learning_rate: float = 3e-3
    weight_decay: float = 1e-5
    grad_clip: float = 1.0
    batch_size: int = 256
    train_steps_per_epoch: int = 300
    val_size: int = 2000
    k_steps: tuple[int, ...] = (1, 5, 10)
    epsilon: float = 1e-3  # val MSE below this counts as "passed"
    # auto: learned reward and termination heads where the env does not state them as functions
    # of observations; learned: always learn them and plan with them (hide the env's own)
    reward: str = "auto"


@dataclass(frozen=True)
class PlannerConfig:
    """MPC over a model: CEM for continuous actions, random shooting / discrete CEM otherwise."""

    method: str = "cem"  # cem | random_shooting
    horizon: int = 10
    num_samples: int = 64
    num_elites: int = 8
    iterations: int = 3
    exploration_noise: float = 0.3  # std of Gaussian noise added to collection actions
    collect_num_samples: int = 32  # collection plans more cheaply than control episodes
    collect_iterations: int = 1
    episodes_per_goal: int = 4  # control episodes per goal per epoch (E)
    random_collect_epochs: int = 1  # epochs that collect with a random policy


@dataclass(frozen=True)
class RegretConfig:
    """How per-goal regret drives collection and how intervals are computed."""

    goal_sampling: str = "uniform"  # uniform | regret | diagnosis
    priority_temperature: float = 1.0
    min_goal_share: float = 0.05  # each goal keeps at least this share of collection
    ci_level: float = 0.95


@dataclass(frozen=True)
class MetaConfig:
    """The MetaJudgmentController's evidence window and threshold."""

    epsilon: float = 0.05  # smallest marginal gain in avg_regret worth more capacity
    relative: bool = False  # compare relative rather than absolute gains with epsilon
    last_k_epochs: int = 2
    bootstrap_samples: int = 2000
    consult_every_epoch: bool = True
    statistic: str = "mean"  # mean | iqm: the per-variant value the decision compares
    multiple_comparisons: str = "holm"  # holm | bh: across goals in the per-goal diagnosis
    significance_level: float = 0.05  # of the per-goal verdicts, after adjustment
    cost: str = "params"  # params | flops | latency_ms: the cost decision.json states
    epsilon_per_cost: float | None = None  # least predicted gain per unit of extra cost worth paying


@dataclass(frozen=True)
class AlertsConfig:
    """Where alerts go besides alerts.jsonl, TensorBoard and the log."""

    webhook_url: str | None = None
    timeout_s: float = 2.0
    retries: int = 2


@dataclass(frozen=True)
class CheckpointConfig:
    """Orbax CheckpointManager retention."""

    enabled: bool = True
    keep_last: int = 2
    keep_best: bool = True


@dataclass(frozen=True)
class DataConfig:
    """Transitions from a file: world models fitted to them alone (``mode: fit``, the data-only
    sweep), or the replay buffers of an env sweep filled with them first (``mode: seed``)."""

    path: str | None = None  # a .npz or .parquet file of obs, action, next_obs [, goal_id, reward, terminated, episode_id]
    drop_nonfinite: bool = False  # drop rows holding NaN/Inf instead of refusing the file
    holdout_fraction: float = 0.2  # share of episodes (rows without episode ids) held out for validation
    relative: bool = True  # compare relative rather than absolute val-MSE gains with meta.epsilon
    chunk_rows: int = 65536  # rows read from the file at a time
    max_eval_rows: int = 100_000  # held-out rows evaluated on (a seeded uniform sample when more)
    # fit: world models fitted to the file alone, no env (the data-only sweep); seed: the file's rows
    # fill every variant's replay buffer (file order: each keeps its buffer_size most recent), then
    # the env sweep runs as without data, its collection adding to the same buffers
    mode: str = "fit"


@dataclass(frozen=True)
class Config:
    """A whole sweep. Frozen: derive a changed copy with ``dataclasses.replace``."""

    run_name: str | None = None
    runs_dir: str = "runs"
    seed: int = 0  # environment / evaluation seed shared by every variant (common random numbers)
    epochs: int = 4
    samples_per_epoch: int = 5000  # transitions collected per variant per epoch
    devices: str = "auto"  # auto | N (number of devices to shard the variant axis over)
    distributed: bool = False
    compile_cache: str | bool = "auto"  # auto | off | PATH (YAML reads a bare off as false)
    env: EnvConfig = field(default_factory=EnvConfig)
    variants: VariantsConfig = field(default_factory=VariantsConfig)
    world_model: WorldModelConfig = field(default_factory=WorldModelConfig)
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    regret: RegretConfig = field(default_factory=RegretConfig)
    meta: MetaConfig = field(default_factory=MetaConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    data: DataConfig = field(default_factory=DataConfig)


def _schema():
    schema = OmegaConf.structured(Config)
    OmegaConf.set_readonly(schema, False)
    return schema


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("--config", f"{path}: no such file") from None
    except OSError as e:
        raise ConfigError("--config", f"{path}: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError("--config", f"{path}{where}: invalid YAML") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("--config", f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def _omegaconf_error(e: OmegaConfBaseException) -> ConfigError:
    key = getattr(e, "full_key", None) or ""
    msg = _first_line(e)
    msg = msg.replace("Value '$VALUE' of type '$VALUE_TYPE'", "an element").replace("$VALUE_TYPE", "value").replace("$VALUE", "value")
    if "not in" in msg or type(e).__name__ == "ConfigKeyError":
        return ConfigError(key, f"unknown key ({msg})")
    return ConfigError(key, f"wrong type ({msg})")


def _parse_overrides(overrides: list[str]) -> list[str]:
    for item in overrides:
        if "\n" in item or "\r" in item:
            raise ConfigError(item.splitlines()[0] if item.strip() else "override", "override must be one line")
        if "=" not in item or item.startswith("="):
            raise ConfigError(item, "override must look like key=value")
    return list(overrides)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:300]


def _merge(data: dict[str, Any], overrides: list[str]):
    """Returns the validated-by-type config object; raises ConfigError naming the bad key."""
    try:
        merged = OmegaConf.merge(_schema(), OmegaConf.create(data), OmegaConf.from_dotlist(overrides))
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        err = _omegaconf_error(e)
    except Exception as e:  # noqa: BLE001 - OmegaConf's grammar and YAML parsers raise others too
        err = ConfigError("", f"cannot parse ({_first_line(e)})")
    if not err.key:
        # OmegaConf did not say which key: find the override (or the file) that fails on its own
        for item in overrides:
            try:
                OmegaConf.to_object(OmegaConf.merge(_schema(), OmegaConf.from_dotlist([item])))
            except Exception:  # noqa: BLE001
                raise ConfigError(item.split("=", 1)[0], err.problem) from None
        raise ConfigError("--config", err.problem) from None
    raise err


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Returns the validated :class:`Config` from schema defaults, a YAML file and overrides.

    Raises:
      ConfigError: unknown key, wrong type or impossible value; the message names the key.
    """
    yaml_path = Path(path) if path is not None else DEFAULT_CONFIG
    data = _load_yaml(yaml_path)
    cfg = _merge(data, _parse_overrides(list(overrides)))
    validate(cfg)
    return cfg


def config_from_dict(data: dict[str, Any]) -> Config:
    """Returns the validated :class:`Config` built from a plain dict (e.g. a saved config.yaml)."""
    cfg = _merge(data, [])
    validate(cfg)
    return cfg


def to_dict(cfg: Config) -> dict[str, Any]:
    """Returns `cfg` as plain nested dicts and lists (YAML/JSON friendly)."""

    def conv(v):
        if isinstance(v, tuple):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v

    return conv(dataclasses.asdict(cfg))


def to_yaml(cfg: Config) -> str:
    """Returns `cfg` as a YAML document."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


# keys that never change what a run computes: a resume may change them without --allow-change
RESULT_NEUTRAL = ("run_name", "compile_cache")


def diff(a: Config, b: Config) -> list[str]:
    """Returns the dotted keys whose values differ between two configs."""
    out: list[str] = []

    def walk(x, y, prefix):
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted(set(x) | set(y)):
                walk(x.get(k), y.get(k), f"{prefix}{k}.")
        elif x != y:
            out.append(prefix[:-1])

    walk(to_dict(a), to_dict(b), "")
    return out


# ----------------------------------------------------------------------------- validation


def _positive(key: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(key, f"must be > 0, got {value!r}")


def _non_negative(key: str, value: float) -> None:
    if not value >= 0:
        raise ConfigError(key, f"must be >= 0, got {value!r}")


def _choice(key: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ConfigError(key, f"must be one of {', '.join(options)}; got {value!r}")


def _unique_positive_list(key: str, values, *, allow_zero: bool = False) -> None:
    if len(values) == 0:
        raise ConfigError(key, "must not be empty")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(key, f"every entry must be an integer, got {v!r}")
    for v in values:
        if (v < 0) if allow_zero else (v <= 0):
            raise ConfigError(key, f"every entry must be {'>= 0' if allow_zero else '> 0'}, got {v!r}")
    if len(set(values)) != len(values):
        dup = sorted({v for v in values if list(values).count(v) > 1})
        raise ConfigError(key, f"duplicate entries {dup}")


def sweep_depths(cfg: Config) -> tuple[int, ...]:
    """Returns the depths the sweep trains: ``variants.num_layers``, else ``(world_model.num_layers,)``."""
    return tuple(sorted(cfg.variants.num_layers)) if cfg.variants.num_layers else (cfg.world_model.num_layers,)


def check_goals(cfg: Config, num_goals: int) -> None:
    """Raises :class:`ConfigError` if ``env.goals`` names a goal the environment does not have."""
    bad = [g for g in cfg.env.goals or () if g >= num_goals]
    if bad:
        raise ConfigError("env.goals", f"goal ids {bad} out of range: {cfg.env.name} has {num_goals} goals")


def validate(cfg: Config) -> Config:
    """Returns `cfg` unchanged if every value is possible; raises :class:`ConfigError` otherwise."""
    for check in (_check_run, _check_env, _check_variants, _check_world_model, _check_planner, _check_rest, _check_data):
        check(cfg)
    return cfg


def _check_run(cfg: Config) -> None:
    if cfg.run_name is not None and not _NAME_RE.match(cfg.run_name):
        raise ConfigError("run_name", f"must be a plain name of letters, digits, '_', '-', '.', got {cfg.run_name!r}")
    if not cfg.runs_dir:
        raise ConfigError("runs_dir", "must not be empty")
    _non_negative("seed", cfg.seed)
    _positive("epochs", cfg.epochs)
    _positive("samples_per_epoch", cfg.samples_per_epoch)
    if cfg.devices != "auto" and not (cfg.devices.isdigit() and int(cfg.devices) > 0):
        raise ConfigError("devices", f"must be 'auto' or a positive integer, got {cfg.devices!r}")
    from augnes_jax.compile_cache import setting_problem

    problem = setting_problem(cfg.compile_cache)
    if problem:
        raise ConfigError("compile_cache", problem)


def _check_env(cfg: Config) -> None:
    from augnes_jax.envs import registry  # local: keep config importable on its own

    if not registry.is_known(cfg.env.name):
        raise ConfigError("env.name", f"must be one of {', '.join(registry.known_names())} "
                                      f"or an import path package.module:factory, got {cfg.env.name!r}")
    _positive("env.episode_length", cfg.env.episode_length)
    if cfg.env.goals is not None:
        _unique_positive_list("env.goals", cfg.env.goals, allow_zero=True)
    num_goals = registry.declared_num_goals(cfg.env.name, cfg.env.kwargs)
    if num_goals is not None:
        check_goals(cfg, num_goals)


def _check_variants(cfg: Config) -> None:
    v = cfg.variants
    _unique_positive_list("variants.hidden_dims", v.hidden_dims)
    _unique_positive_list("variants.buffer_sizes", v.buffer_sizes)
    _unique_positive_list("variants.seeds", v.seeds, allow_zero=True)
    if v.num_layers is not None:
        _unique_positive_list("variants.num_layers", v.num_layers)
        bad = [d for d in v.num_layers if d not in (1, 2)]
        if bad:
            raise ConfigError("variants.num_layers", f"each depth must be 1 or 2, got {bad[0]}")
    if v.bucket_ratio < 1:
        raise ConfigError("variants.bucket_ratio", f"must be >= 1, got {v.bucket_ratio}")
    _choice("variants.capacity_mode", v.capacity_mode, ("fixed", "auto"))
    _positive("variants.auto_start_hidden_dim", v.auto_start_hidden_dim)
    if v.auto_max_hidden_dim < v.auto_start_hidden_dim:
        raise ConfigError("variants.auto_max_hidden_dim", "must be >= variants.auto_start_hidden_dim")


def _check_world_model(cfg: Config) -> None:
    w = cfg.world_model
    if w.num_layers not in (1, 2):
        raise ConfigError("world_model.num_layers", f"must be 1 or 2, got {w.num_layers}")
    _positive("world_model.learning_rate", w.learning_rate)
    _non_negative("world_model.weight_decay", w.weight_decay)
    _positive("world_model.grad_clip", w.grad_clip)
    _positive("world_model.batch_size", w.batch_size)
    _positive("world_model.train_steps_per_epoch", w.train_steps_per_epoch)
    _positive("world_model.val_size", w.val_size)
    _unique_positive_list("world_model.k_steps", w.k_steps)
    if max(w.k_steps) > cfg.env.episode_length:
        raise ConfigError("world_model.k_steps", f"{max(w.k_steps)} exceeds env.episode_length {cfg.env.episode_length}")
    _positive("world_model.epsilon", w.epsilon)
    _choice("world_model.reward", w.reward, ("auto", "learned"))


def _check_planner(cfg: Config) -> None:
    p = cfg.planner
    _choice("planner.method", p.method, ("cem", "random_shooting"))
    _positive("planner.horizon", p.horizon)
    _positive("planner.num_samples", p.num_samples)
    _positive("planner.num_elites", p.num_elites)
    if p.num_elites > p.num_samples:
        raise ConfigError("planner.num_elites", f"{p.num_elites} exceeds planner.num_samples {p.num_samples}")
    _positive("planner.iterations", p.iterations)
    _non_negative("planner.exploration_noise", p.exploration_noise)
    _positive("planner.collect_num_samples", p.collect_num_samples)
    _positive("planner.collect_iterations", p.collect_iterations)
    _positive("planner.episodes_per_goal", p.episodes_per_goal)
    _non_negative("planner.random_collect_epochs", p.random_collect_epochs)


def _check_rest(cfg: Config) -> None:
    r = cfg.regret
    _choice("regret.goal_sampling", r.goal_sampling, ("uniform", "regret", "diagnosis"))
    _positive("regret.priority_temperature", r.priority_temperature)
    if not 0 <= r.min_goal_share < 1:
        raise ConfigError("regret.min_goal_share", f"must be in [0, 1), got {r.min_goal_share}")
    if not 0 < r.ci_level < 1:
        raise ConfigError("regret.ci_level", f"must be in (0, 1), got {r.ci_level}")

    m = cfg.meta
    _non_negative("meta.epsilon", m.epsilon)
    _positive("meta.last_k_epochs", m.last_k_epochs)
    _positive("meta.bootstrap_samples", m.bootstrap_samples)
    _choice("meta.statistic", m.statistic, ("mean", "iqm"))
    _choice("meta.multiple_comparisons", m.multiple_comparisons, ("holm", "bh"))
    if not 0 < m.significance_level < 1:
        raise ConfigError("meta.significance_level", f"must be in (0, 1), got {m.significance_level}")
    _choice("meta.cost", m.cost, ("params", "flops", "latency_ms"))
    if r.goal_sampling == "diagnosis" and not m.consult_every_epoch:
        raise ConfigError("regret.goal_sampling", "diagnosis needs meta.consult_every_epoch: true "
                                                  "(the verdicts come from each epoch's decision)")
    if m.epsilon_per_cost is not None:
        _non_negative("meta.epsilon_per_cost", m.epsilon_per_cost)

    a = cfg.alerts
    if a.webhook_url is not None and not re.match(r"^https?://[^\s/]+", a.webhook_url):
        raise ConfigError("alerts.webhook_url", f"must be an http(s) URL, got {a.webhook_url!r}")
    _positive("alerts.timeout_s", a.timeout_s)
    _non_negative("alerts.retries", a.retries)

    _positive("checkpoint.keep_last", cfg.checkpoint.keep_last)


def _check_data(cfg: Config) -> None:
    d = cfg.data
    if d.path is not None and not d.path.strip():
        raise ConfigError("data.path", "must name a file")
    if not 0 < d.holdout_fraction < 1:
        raise ConfigError("data.holdout_fraction", f"must be in (0, 1), got {d.holdout_fraction}")
    _positive("data.chunk_rows", d.chunk_rows)
    _positive("data.max_eval_rows", d.max_eval_rows)
    if d.path is not None and d.mode == "fit" and len(cfg.variants.num_layers or ()) > 1:
        raise ConfigError("variants.num_layers", "a sweep on data.path compares widths at one depth; "
                                                 "give one depth (or use data.mode=seed with an env)")
    if d.path is not None and d.mode == "fit" and cfg.variants.capacity_mode != "fixed":
        raise ConfigError("variants.capacity_mode", "a sweep on data.path compares fixed hidden_dims; set it to fixed")
    _choice("data.mode", d.mode, ("fit", "seed"))
    if d.mode == "seed" and d.path is None:
        raise ConfigError("data.mode", "seed fills the replay buffers from data.path; set data.path")
