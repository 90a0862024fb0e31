"""Depth as a capacity axis: (depth, width) buckets, masked equals dense at depth 2, the depth
ladder in decision.json against judgments.jsonl, and which axis pays more per unit of cost."""

import json
from collections import defaultdict

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from augnes_jax import infer, meta
from augnes_jax import world_model as W
from augnes_jax.config import ConfigError, load_config, sweep_depths
from augnes_jax.decision import decide
from augnes_jax.decision_analysis import AnalysisSettings
from augnes_jax.evidence import VariantEvidence
from augnes_jax.inference import load_world_model
from augnes_jax.judgment_decision import decide as decide_judgments
from augnes_jax.judgment_evidence import GroupKey
from augnes_jax.judgments import read_judgments
from augnes_jax.stats import run_names
from augnes_jax.sweep import Sweep
from augnes_jax.sweep_io import decision_text
from augnes_jax.sweep_setup import sweep_buckets
from augnes_jax.variants import (
    VARIANT_RE,
    all_variants,
    build_buckets,
    parse_variant_name,
    variant_name,
    variant_num_params,
)
from tests.sweep_configs import TINY

DEPTHS = ["variants.num_layers=[1,2]"]


class DenseMLP(nn.Module):
    """A plain flax MLP of ``depth`` swish layers of ``width`` units, built apart from the masked net."""

    width: int
    depth: int
    out: int

    @nn.compact
    def __call__(self, x):
        for _ in range(self.depth):
            x = nn.swish(nn.Dense(self.width)(x))
        return nn.Dense(self.out)(x)


def _leaves(tree) -> int:
    return sum(int(np.size(x)) for x in jax.tree.leaves(tree))


def _dense_weights(dense: dict, depth: int) -> dict:
    """Returns a variant's dense params in DenseMLP's layout (the masked net stores ``out`` transposed)."""
    p = dense["params"]
    layers = {f"Dense_{i}": {"kernel": p[f"hidden_{i}"]["kernel"], "bias": p[f"hidden_{i}"]["bias"]} for i in range(depth)}
    layers[f"Dense_{depth}"] = {"kernel": p["out"]["kernel"].T, "bias": p["out"]["bias"]}
    return {"params": layers}


# ------------------------------------------------------------------------------- names, buckets


def test_names_carry_the_depth_only_when_the_sweep_has_several():
    one = build_buckets((4, 16, 64), (400,), (0, 1), 4, depths=(2,))
    assert [b.name for b in one] == ["w16", "w64"]
    assert {v.name for v in all_variants(one)} >= {"h4-b400-s0", "h64-b400-s1"}
    assert all(v.num_layers == 2 and v.named_depth is None for v in all_variants(one))
    two = build_buckets((4, 16, 64), (400,), (0,), 4, depths=(2, 1))
    assert [(b.name, b.num_layers) for b in two] == [("d1-w16", 1), ("d1-w64", 1), ("d2-w16", 2), ("d2-w64", 2)]
    names = [v.name for v in all_variants(two)]
    assert names == ["d1-h4-b400-s0", "d1-h16-b400-s0", "d1-h64-b400-s0",
                     "d2-h4-b400-s0", "d2-h16-b400-s0", "d2-h64-b400-s0"]  # fmt: skip
    assert all(v.bucket.startswith(f"d{v.num_layers}-") for v in all_variants(two))
    # one regex, one parser for both forms
    assert all(VARIANT_RE.match(n) for n in names + ["h4-b400-s0"])
    assert parse_variant_name("d2-h16-b400-s3") == (16, 400, 3, 2)
    assert parse_variant_name("h16-b400-s3") == (16, 400, 3, None)
    assert parse_variant_name("d2-h16-b400") is None and parse_variant_name("x2-h16-b400-s3") is None
    assert variant_name(16, 400, 3, 2) == "d2-h16-b400-s3" and variant_name(16, 400, 3) == "h16-b400-s3"
    grown = all_variants(two)[3].with_width(8)
    assert (grown.name, grown.hidden_dim, grown.num_layers) == ("d2-h8-b400-s0", 8, 2)


def test_config_depths_default_to_the_world_model_and_bad_depths_name_the_key():
    cfg = load_config(None, TINY)
    assert cfg.variants.num_layers is None and sweep_depths(cfg) == (cfg.world_model.num_layers,)
    assert [b.name for b in sweep_buckets(cfg)] == ["w16"]
    assert all(v.num_layers == cfg.world_model.num_layers for v in all_variants(sweep_buckets(cfg)))
    cfg1 = load_config(None, TINY + ["world_model.num_layers=1"])
    assert {v.num_layers for v in all_variants(sweep_buckets(cfg1))} == {1}
    cfg2 = load_config(None, TINY + ["variants.num_layers=[2,1]"])
    assert sweep_depths(cfg2) == (1, 2) and [b.name for b in sweep_buckets(cfg2)] == ["d1-w16", "d2-w16"]
    for bad in ("[1,3]", "[0]", "[1,1]"):
        with pytest.raises(ConfigError, match=r"variants\.num_layers"):
            load_config(None, TINY + [f"variants.num_layers={bad}"])


# ------------------------------------------------------------------------ masked equals dense


@pytest.mark.parametrize("depth", [1, 2])
def test_a_variant_in_a_mixed_depth_sweep_is_a_dense_mlp_of_its_depth(depth):
    obs_dim, act_dim = 5, 2
    buckets = build_buckets((4, 16), (400,), (0,), 4, depths=(1, 2))
    (b,) = [b for b in buckets if b.num_layers == depth]
    v = b.variants[0]  # h4 inside the width-16 bucket
    assert (v.hidden_dim, b.max_width) == (4, 16)
    wm = W.make_world_model(obs_dim, act_dim, b.max_width, b.num_layers)
    states = jax.vmap(wm.init)(jax.random.split(jax.random.key(3), len(b.variants)),
                               jnp.asarray([u.hidden_dim for u in b.variants]))  # fmt: skip
    masked = jax.tree.map(lambda x: x[v.index], states.params)
    # every weight random, masked ones too: the mask alone must keep them out
    keys = iter(jax.random.split(jax.random.key(7), 16))
    masked = jax.tree.map(lambda x: jax.random.normal(next(keys), x.shape), masked)
    dense = W.dense_params(masked, v.hidden_dim)
    ref = DenseMLP(v.hidden_dim, depth, obs_dim)
    ref_params = ref.init(jax.random.key(0), jnp.zeros((1, obs_dim + act_dim)))
    # parameter count: the dense net's leaves, the sliced masked params and variant_num_params agree
    assert _leaves(ref_params) == _leaves(dense) == variant_num_params(v, obs_dim, act_dim)
    assert variant_num_params(v, obs_dim, act_dim) == (
        (obs_dim + act_dim + 1) * 4 + (depth - 1) * (4 * 4 + 4) + (4 + 1) * obs_dim)
    x = jax.random.normal(jax.random.key(1), (32, obs_dim + act_dim))
    want = ref.apply(_dense_weights(dense, depth), x)
    got = wm.module.apply(masked, x, W.unit_mask(v.hidden_dim, b.max_width))
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def depth_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("depth") / "run"
    cfg = load_config(None, TINY + DEPTHS)
    Sweep(cfg, run_dir, progress=False).run()
    return cfg, run_dir


def _hand_window_means(run_dir, steps) -> dict[str, float]:
    """Returns each variant's mean over ``steps`` of its per-epoch mean regret, from judgments.jsonl."""
    j = read_judgments(run_dir / "judgments.jsonl")
    per: dict[tuple[str, int], list[float]] = defaultdict(list)
    for name, epoch, r in zip(j.variant, j.epoch.tolist(), j.regret.tolist(), strict=True):
        per[(name, epoch)].append(r)
    names = {n for n, _ in per}
    return {n: float(np.mean([np.float32(np.mean(per[(n, s)])) for s in steps])) for n in names}


def test_a_sweep_over_depths_runs_end_to_end(depth_run, capsys):
    cfg, run_dir = depth_run
    rows = [json.loads(line) for line in (run_dir / "judgments.jsonl").read_text().splitlines()]
    assert {r["variant"] for r in rows} == {f"d{d}-h{h}-b400-s{s}" for d in (1, 2) for h in (4, 16) for s in (0, 1)}
    assert all(r["num_layers"] == parse_variant_name(r["variant"]).num_layers for r in rows)
    wm = json.loads((run_dir / "world_model_stats.json").read_text())["variants"]
    assert {name: v["num_layers"] for name, v in wm.items()} == {
        name: parse_variant_name(name).num_layers for name in wm}
    doc = json.loads((run_dir / "decision.json").read_text())
    assert set(doc["recommended"]) == {"hidden_dim", "buffer_size", "num_layers"}
    assert {(c["num_layers"], c["hidden_dim"]) for c in doc["capacities"]} == {(1, 4), (1, 16), (2, 4), (2, 16)}
    means = _hand_window_means(run_dir, doc["evidence"]["steps"])
    depth_gains = [g for g in doc["gains"] if g["axis"] == "num_layers"]
    assert sorted(g["ladder"]["hidden_dim"] for g in depth_gains) == [4, 16]
    for g in depth_gains:
        h = g["ladder"]["hidden_dim"]
        r1 = np.mean([means[f"d1-h{h}-b400-s{s}"] for s in (0, 1)])
        r2 = np.mean([means[f"d2-h{h}-b400-s{s}"] for s in (0, 1)])
        assert (g["from"], g["to"]) == (1, 2)
        assert g["avg_regret_from"] == pytest.approx(r1, rel=1e-5)
        assert g["avg_regret_to"] == pytest.approx(r2, rel=1e-5)
        assert g["gain"] == pytest.approx(r1 - r2, rel=1e-4, abs=1e-6)
    # the parameters behind the cost: each capacity at its own depth
    obs_dim = 6
    params = {(c["num_layers"], c["hidden_dim"]): c["num_params"] for c in doc["capacities"]}
    for (d, h), n in params.items():
        ref = DenseMLP(h, d, obs_dim).init(jax.random.key(0), jnp.zeros((1, obs_dim + 2)))
        assert n == _leaves(ref)
    axes = doc["capacity_axes"]
    assert axes["measure"] == "params" and axes["from"] == doc["recommended"]
    rec = doc["recommended"]
    for axis, entry in axes["axes"].items():
        fixed = {k: v for k, v in rec.items() if k != axis}
        (g,) = [g for g in doc["gains"] if g["axis"] == axis and g["ladder"] == fixed]  # two capacities per axis
        assert (entry["from"], entry["to"], entry["gain"]) == (g["from"], g["to"], g["gain"])
        small, large = {**rec, axis: g["from"]}, {**rec, axis: g["to"]}
        assert entry["cost_from"] == params[(small["num_layers"], small["hidden_dim"])]
        assert entry["cost_to"] == params[(large["num_layers"], large["hidden_dim"])]
        assert entry["gain_per_cost"] == pytest.approx(g["gain"] / (entry["cost_to"] - entry["cost_from"]))
    priced = {a: e["gain_per_cost"] for a, e in axes["axes"].items()}
    assert axes["pays_more"] == max(priced, key=priced.get)
    assert axes["line"] in doc["reason"]
    # the controller's CLI names the axis; inference loads a depth-2 variant
    assert meta.main([str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "width or depth:" in out and "num_layers" in out
    code = infer.main([str(run_dir), "--variant", "d2-h16-b400-s1", "--obs", "0.1,0.2,0.3,0.4,0.5,0.6",
                       "--action", "0.5,-0.5"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    doc_inf = json.loads(capsys.readouterr().out)
    p = load_world_model(run_dir, "d2-h16-b400-s1")
    assert p.model.num_layers == 2 and set(p.params["params"]) == {"hidden_0", "hidden_1", "out"}
    assert all(v["num_layers"] == parse_variant_name(v["name"]).num_layers for v in p.meta["variants"])
    assert set(load_world_model(run_dir, "d1-h16-b400-s1").params["params"]) == {"hidden_0", "out"}
    obs, act = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], np.float32), np.array([0.5, -0.5], np.float32)
    norm = p.normalizer
    x = jnp.concatenate([(obs - norm.obs_mean) / norm.obs_std, (act - norm.act_mean) / norm.act_std])
    want = DenseMLP(16, 2, obs_dim).apply(_dense_weights(p.params, 2), x) * norm.delta_std + norm.delta_mean
    np.testing.assert_allclose(doc_inf["delta"], np.asarray(want), rtol=1e-4, atol=1e-5)


def test_the_judgments_log_of_a_sweep_over_depths_gives_the_same_depth_ladder(depth_run):
    cfg, run_dir = depth_run
    doc = json.loads((run_dir / "decision.json").read_text())
    jd = decide_judgments(run_dir / "judgments.jsonl", epsilon=cfg.meta.epsilon, k_last=doc["k_last"],
                          bootstrap_samples=200).to_json()  # fmt: skip
    assert jd["recommended"] == doc["recommended"]
    by_step = {(g["axis"], tuple(sorted(g["ladder"].items())), g["from"]): g for g in jd["gains"]}
    assert len(by_step) == len(doc["gains"])
    for g in doc["gains"]:
        mine = by_step[(g["axis"], tuple(sorted(g["ladder"].items())), g["from"])]
        assert mine["avg_regret_from"] == pytest.approx(g["avg_regret_from"], rel=1e-6)
        assert mine["avg_regret_to"] == pytest.approx(g["avg_regret_to"], rel=1e-6)
    # stats --tb names a depth group's run as the sweep named it
    assert run_names([GroupKey("anything", 4, 400, 0, 2), GroupKey("h4", 4, 400, 0)]) == ["d2-h4-b400-s0", "h4-b400-s0"]


# ------------------------------------------------------------------ which axis pays more


def _evidence(regret: dict[tuple[int, int], float], *, latency=None, seeds=4, obs_dim=4, act_dim=2):
    """Evidence of capacities ``(num_layers, hidden_dim)`` with small per-seed noise."""
    rng = np.random.default_rng(0)
    out = []
    for (d, h), r in regret.items():
        for s in range(seeds):
            cells = r + 0.01 * rng.standard_normal(6)
            out.append(VariantEvidence(
                name=variant_name(h, 100, s, d), hidden_dim=h, buffer_size=100, seed=s, steps=(0, 1),
                avg_regret=float(cells.mean()), cells=cells, cell_tags=("regret/avg",),
                num_params=float(W.num_params(obs_dim, act_dim, h, d)), avg_advantage=None, val_mse=None,
                latency_ms=None if latency is None else latency[(d, h)], num_layers=d))  # fmt: skip
    return out


# depth clearly pays more: 1 -> 2 layers at width 8 gains 6 for 72 parameters, width 8 -> 32 only 0.5
DEPTH_PAYS = {(1, 8): 10.0, (2, 8): 4.0, (1, 32): 9.5, (2, 32): 3.8}
# width clearly pays more: 8 -> 32 gains 6, a second layer at most 0.2
WIDTH_PAYS = {(1, 8): 10.0, (2, 8): 9.8, (1, 32): 4.0, (2, 32): 3.9}


def _gain(doc, axis, ladder):
    (g,) = [g for g in doc["gains"] if g["axis"] == axis and g["ladder"] == ladder]
    return g


def test_the_controller_names_depth_where_depth_pays_more_per_parameter():
    decision = decide(_evidence(DEPTH_PAYS), epsilon=1.0, analysis=AnalysisSettings(cost="params"))
    d = decision.to_json()
    assert d["recommended"] == {"hidden_dim": 8, "buffer_size": 100, "num_layers": 2}
    # a significant step into the largest depth: expand, one layer deeper
    assert d["decision"] == "expand" and d["suggested_next"] == {"hidden_dim": 8, "buffer_size": 100, "num_layers": 3}
    text = decision_text(decision)
    assert "recommended hidden_dim 8, buffer_size 100, num_layers 2" in text
    assert "d1-h8-b100: 10; d1-h32-b100: 9.5; d2-h8-b100: 4; d2-h32-b100: 3.8" in text
    axes = d["capacity_axes"]
    assert axes["pays_more"] == "num_layers"
    assert axes["line"].startswith("depth pays more per parameter") and axes["line"] in d["reason"]
    depth, width = axes["axes"]["num_layers"], axes["axes"]["hidden_dim"]
    p = {(n, h): W.num_params(4, 2, h, n) for n, h in DEPTH_PAYS}
    g_depth = _gain(d, "num_layers", {"hidden_dim": 8, "buffer_size": 100})
    g_width = _gain(d, "hidden_dim", {"buffer_size": 100, "num_layers": 2})
    assert (depth["from"], depth["to"]) == (1, 2) and (width["from"], width["to"]) == (8, 32)
    assert depth["gain_per_cost"] == pytest.approx(g_depth["gain"] / (p[(2, 8)] - p[(1, 8)]))
    assert width["gain_per_cost"] == pytest.approx(g_width["gain"] / (p[(2, 32)] - p[(2, 8)]))
    assert depth["gain_per_cost"] > 10 * width["gain_per_cost"]
    # priced in FLOPs the per-cost figures scale by the FLOPs per parameter; the answer stays
    f = decide(_evidence(DEPTH_PAYS), epsilon=1.0,
               analysis=AnalysisSettings(cost="flops", flops_per_param=600.0)).to_json()["capacity_axes"]  # fmt: skip
    assert f["pays_more"] == "num_layers"
    assert f["axes"]["num_layers"]["gain_per_cost"] == pytest.approx(depth["gain_per_cost"] / 600.0)


def test_the_controller_names_width_where_width_pays_more_per_parameter():
    d = decide(_evidence(WIDTH_PAYS), epsilon=1.0, analysis=AnalysisSettings(cost="params")).to_json()
    assert d["recommended"] == {"hidden_dim": 32, "buffer_size": 100, "num_layers": 1}
    axes = d["capacity_axes"]
    assert axes["pays_more"] == "hidden_dim" and axes["line"].startswith("width pays more per parameter")
    width, depth = axes["axes"]["hidden_dim"], axes["axes"]["num_layers"]
    assert (width["from"], width["to"]) == (8, 32)  # the step into the recommended width
    assert (depth["from"], depth["to"]) == (1, 2)  # the step out of the recommended depth
    g = _gain(d, "hidden_dim", {"buffer_size": 100, "num_layers": 1})
    assert width["gain_per_cost"] == pytest.approx(g["gain"] / (W.num_params(4, 2, 32, 1) - W.num_params(4, 2, 8, 1)))


def test_latency_prices_the_axes_by_measured_milliseconds():
    # the same regrets as DEPTH_PAYS, but a second layer costs 50 ms and four times the width 1 ms
    lat = {(1, 8): 1.0, (2, 8): 51.0, (1, 32): 2.0, (2, 32): 52.0}
    d = decide(_evidence(DEPTH_PAYS, latency=lat), epsilon=1.0, analysis=AnalysisSettings(cost="latency_ms")).to_json()
    axes = d["capacity_axes"]
    depth, width = axes["axes"]["num_layers"], axes["axes"]["hidden_dim"]
    assert (depth["cost_from"], depth["cost_to"]) == (1.0, 51.0) and (width["cost_from"], width["cost_to"]) == (51.0, 52.0)
    assert depth["gain_per_cost"] == pytest.approx(depth["gain"] / 50.0)
    assert width["gain_per_cost"] == pytest.approx(width["gain"] / 1.0)
    assert axes["pays_more"] == "hidden_dim" and "per ms of planner latency" in axes["line"]


def test_single_depth_evidence_has_no_depth_axis():
    ev = [e for e in _evidence(DEPTH_PAYS) if e.num_layers == 1]
    d = decide(ev, epsilon=1.0, with_analysis=False).to_json()
    assert set(d["recommended"]) == {"hidden_dim", "buffer_size"} and "capacity_axes" not in d
    assert all("num_layers" not in c for c in d["capacities"])
    assert all("num_layers" not in g["ladder"] for g in d["gains"])
