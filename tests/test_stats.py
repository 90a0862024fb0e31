"""strategy_stats.json and the stats CLI, checked against numbers worked out by hand."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from augnes_jax import stats
from augnes_jax.judgment_evidence import GroupKey
from augnes_jax.judgments import JudgmentError, JudgmentWriter, make_judgments, read_judgments
from augnes_jax.tensorboard_io import TensorBoardReader

FIXTURE = Path(__file__).parent / "fixtures" / "judgments_small.jsonl"
approx = lambda x: pytest.approx(x, rel=1e-5, abs=1e-6)  # noqa: E731

# Hand-worked values for tests/fixtures/judgments_small.jsonl (t quantiles from tables:
# t_{.975,1} = 12.7062047, t_{.975,2} = 4.30265273, t_{.975,3} = 3.18244631, t_{.975,4} = 2.77644511).
# greedy: regrets 2,1 (goal 0) and 1,0,3 (goal 1); advantages 1,2 and 3,4,1;
#         reward/optimal/baseline sums: goal 0 3/6/0, goal 1 11/15/3.
# cem: regret 0.5 (goal 0, advantage 2.5, no optimal) and 2,1,0.5 (goal 2, no baseline).
GREEDY = {
    "episodes": 5, "sum_regret": 7.0, "avg_regret": 1.4,
    "ci": [1.4 - 2.77644511 * np.sqrt(1.3 / 5), 1.4 + 2.77644511 * np.sqrt(1.3 / 5)],
    "avg_advantage": 2.2, "normalized_score": 11 / 18,
    "goals": {
        "0": {"count": 2, "sum_regret": 3.0, "avg_regret": 1.5, "avg_advantage": 1.5,
              "ci": [1.5 - 12.7062047 * 0.5, 1.5 + 12.7062047 * 0.5], "normalized_score": 0.5},
        "1": {"count": 3, "sum_regret": 4.0, "avg_regret": 4 / 3, "avg_advantage": 8 / 3,
              "ci": [4 / 3 - 4.30265273 * np.sqrt(7 / 3 / 3), 4 / 3 + 4.30265273 * np.sqrt(7 / 3 / 3)],
              "normalized_score": 8 / 12},
    },
}  # fmt: skip
CEM = {
    "episodes": 4, "sum_regret": 4.0, "avg_regret": 1.0,
    "ci": [1.0 - 3.18244631 * np.sqrt(0.5 / 4), 1.0 + 3.18244631 * np.sqrt(0.5 / 4)],
    "avg_advantage": 2.5, "normalized_score": None,
    "goals": {
        "0": {"count": 1, "sum_regret": 0.5, "avg_regret": 0.5, "avg_advantage": 2.5, "ci": None,
              "normalized_score": None},
        "2": {"count": 3, "sum_regret": 3.5, "avg_regret": 7 / 6, "avg_advantage": None,
              "ci": [7 / 6 - 4.30265273 * np.sqrt(3.5 / 6 / 3), 7 / 6 + 4.30265273 * np.sqrt(3.5 / 6 / 3)],
              "normalized_score": None},
    },
}  # fmt: skip
NULL_GOAL = {"count": 0, "sum_regret": None, "avg_regret": None, "avg_regret_ci95": None,
             "avg_advantage": None, "normalized_score": None}  # fmt: skip


def check_experiment(got, want):
    for key in ("episodes", "sum_regret", "avg_regret", "avg_advantage", "normalized_score"):
        if want[key] is None:
            assert got[key] is None, key
        else:
            assert got[key] == approx(want[key]), key
    assert got["avg_regret_ci95"] == [approx(want["ci"][0]), approx(want["ci"][1])]
    for g, w in want["goals"].items():
        row = got["goals"][g]
        assert row["count"] == w["count"]
        for key in ("sum_regret", "avg_regret", "avg_advantage", "normalized_score"):
            assert (row[key] is None) if w[key] is None else row[key] == approx(w[key]), (g, key)
        if w["ci"] is None:
            assert row["avg_regret_ci95"] is None
        else:
            assert row["avg_regret_ci95"] == [approx(w["ci"][0]), approx(w["ci"][1])]


def test_hand_checked_fixture():
    doc = stats.build_strategy_stats(read_judgments(FIXTURE), source="fixture", num_goals=4)
    assert doc["schema"] == 1 and doc["source"] == "fixture" and doc["num_goals"] == 4
    assert doc["episodes"] == 9 and doc["groups"] == []
    greedy, cem = doc["experiments"]
    assert greedy["variant"] == "greedy" and cem["variant"] == "cem"
    assert "hidden_dim" not in greedy and greedy["diverged"] is False
    check_experiment(greedy, GREEDY)
    check_experiment(cem, CEM)
    assert greedy["goals"]["2"] == NULL_GOAL and greedy["goals"]["3"] == NULL_GOAL
    assert cem["goals"]["1"] == NULL_GOAL
    # strict JSON: no NaN anywhere
    json.dumps(doc, allow_nan=False)


def test_a_list_of_records_gives_the_same_document():
    records = [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]
    doc = stats.build_strategy_stats(records, source="fixture", num_goals=4)
    check_experiment(doc["experiments"][0], GREEDY)
    check_experiment(doc["experiments"][1], CEM)
    with pytest.raises(TypeError, match="expected a list of judgment records"):
        stats.build_strategy_stats("judgments.jsonl", source="f")
    with pytest.raises(JudgmentError, match=r"^record 1: missing required field 'reward'"):
        stats.build_strategy_stats([records[0], {"goal_id": 1}], source="f")


def test_known_optimum_and_baseline_fill_rows_that_lack_them():
    doc = stats.build_strategy_stats(
        read_judgments(FIXTURE), source="f", optimal_by_goal={0: 3.0, 2: 1.0},
        baseline_by_goal=[0.0, 1.0, -1.0],
    )  # fmt: skip
    cem = doc["experiments"][1]
    # goal 0: reward 2.5, optimal 3.0 (filled), baseline 0.0 -> 2.5 / 3
    assert cem["goals"]["0"]["normalized_score"] == approx(2.5 / 3.0)
    # goal 2: rewards -1, 0, 0.5, optimal 1, baseline -1 (filled): (-0.5/3 + 1) / 2
    assert cem["goals"]["2"]["normalized_score"] == approx((-0.5 / 3 + 1) / 2)
    assert cem["goals"]["2"]["avg_advantage"] == approx(-0.5 / 3 + 1)
    # experiment: sums over the four rows: reward 2, optimal 6, baseline -3
    assert cem["normalized_score"] == approx((2 + 3) / (6 + 3))


def test_capacity_experiments_groups_and_divergence(tmp_path):
    path = tmp_path / "judgments.jsonl"
    with JudgmentWriter(path) as w:
        for seed, regrets in ((0, [1.0, 3.0]), (1, [2.0, 6.0])):
            w.append(make_judgments([0, 1], np.zeros(2), np.array(regrets), variant=f"h8-b100-s{seed}",
                                    hidden_dim=8, buffer_size=100, seed=seed, epoch=0))  # fmt: skip
        w.append(make_judgments([0], [0.0], [0.5], variant="h32-b100-s0", hidden_dim=32,
                                buffer_size=100, seed=0))  # fmt: skip
        w.append([{"goal_id": 1, "reward": 0.0, "regret": 1.5, "variant": "h32-b100-s0",
                   "hidden_dim": 32, "buffer_size": 100, "seed": 0, "diverged": True}])  # fmt: skip
    doc = stats.build_strategy_stats(
        read_judgments(path), source=str(path), diverged_variants={"h8-b100-s1"}
    )
    exps = {e["variant"]: e for e in doc["experiments"]}
    assert exps["h8-b100-s0"]["hidden_dim"] == 8 and exps["h8-b100-s0"]["seed"] == 0
    assert exps["h8-b100-s0"]["buffer_size"] == 100
    assert [exps[v]["diverged"] for v in ("h8-b100-s0", "h8-b100-s1", "h32-b100-s0")] == [
        False, True, True,
    ]  # fmt: skip
    assert doc["groups"][0]["hidden_dim"] == 8 and doc["groups"][1]["hidden_dim"] == 32
    g8 = doc["groups"][0]
    assert g8["seeds"] == [0, 1] and g8["episodes"] == 4
    assert g8["avg_regret"] == approx(3.0)  # (1 + 3 + 2 + 6) / 4
    # regrets 1, 3, 2, 6: s^2 = 14/3, t_{.975,3} = 3.18244631
    half = 3.18244631 * np.sqrt(14 / 3 / 4)
    assert g8["avg_regret_ci95"] == [approx(3.0 - half), approx(3.0 + half)]
    assert g8["avg_advantage"] is None
    assert doc["groups"][1]["seeds"] == [0] and doc["groups"][1]["avg_regret"] == approx(1.0)


def test_goal_ids_beyond_num_goals_are_an_error():
    with pytest.raises(ValueError, match="goal_id 2 is not below num_goals 2"):
        stats.build_strategy_stats(read_judgments(FIXTURE), source="f", num_goals=2)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def test_cli_writes_stats_tensorboard_and_a_table(tmp_path, capsys):
    out = tmp_path / "out" / "strategy_stats.json"
    tb = tmp_path / "tb"
    assert stats.main([str(FIXTURE), "--out", str(out), "--tb", str(tb)]) == 0
    doc = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
    check_experiment(doc["experiments"][0], GREEDY)
    check_experiment(doc["experiments"][1], CEM)
    printed = capsys.readouterr().out
    assert "greedy" in printed and "avg regret" in printed and "1.333" in printed
    reader = TensorBoardReader(tb).reload()
    assert reader.runs() == ["cem", "greedy"]
    steps, values, _ = reader.scalars("greedy", "regret/goal_1/avg")
    assert steps.tolist() == [0] and values[0] == approx(4 / 3)
    assert reader.scalars("greedy", "regret/sum")[1][0] == approx(7.0)
    assert "regret/goal_2/avg" not in reader.tags("greedy")  # no episodes: no scalar
    assert reader.hparams("greedy")["variant"] == "greedy"


def test_cli_writes_the_columns_as_parquet(tmp_path, capsys):
    out = tmp_path / "cols" / "judgments.parquet"
    assert stats.main([str(FIXTURE), "--out", str(tmp_path / "s.json"), "--parquet", str(out)]) == 0
    df = pl.read_parquet(out)
    assert df.height == 9 and [p.name for p in out.parent.iterdir()] == ["judgments.parquet"]
    assert df["goal_id"].to_list() == [0, 0, 1, 1, 1, 0, 2, 2, 2]
    assert df["regret"].to_list() == [2.0, 1.0, 1.0, 0.0, 3.0, 0.5, 2.0, 1.0, 0.5]
    assert df["optimal_reward"].to_list()[5] is None and df["advantage"].to_list()[6:] == [None] * 3
    assert df["episode"].to_list() == [0, 1, 2] + [None] * 6
    assert df["strategy"].to_list() == ["greedy"] * 5 + ["cem"] * 4 and df["run"][8] == "external"
    extra = df["extra"].to_list()
    assert json.loads(extra[2]) == {"note": "compact"} and extra[0] is None
    assert json.loads(extra[6]) == {"info": {"source": "other-system"}}


def _bad_files(tmp_path):
    good = '{"goal_id": 0, "reward": 1.0, "optimal_reward": 2.0}'
    cases = {
        "empty": ("", "no judgments"),
        "no_goal": (f'{good}\n{{"reward": 1.0, "optimal_reward": 2.0}}\n', ":2: missing required field 'goal_id'"),
        "text_reward": (f'{good}\n{good}\n{{"goal_id": 0, "reward": "x", "regret": 1}}\n', ":3: reward must be a number"),
        "nan_reward": (f'{{"goal_id": 0, "reward": NaN, "regret": 1}}\n{good}\n', ":1: reward must be finite, got NaN"),
        "inf_reward": (f'{good}\n{{"goal_id": 0, "reward": Infinity, "regret": 1}}\n', ":2: reward must be finite, got Infinity"),
        "contradiction": (f'{good}\n{{"goal_id": 1, "reward": 1.0, "optimal_reward": 2.0, "regret": 3.0}}\n',
                          ":2: regret 3.0 contradicts optimal_reward - reward = 1.0"),
    }  # fmt: skip
    out = {}
    for name, (text, msg) in cases.items():
        p = tmp_path / f"{name}.jsonl"
        p.write_text(text)
        out[name] = (p, msg)
    out["missing"] = (tmp_path / "missing.jsonl", "no such file")
    return out


@pytest.mark.parametrize(
    "case", ["missing", "empty", "no_goal", "text_reward", "nan_reward", "inf_reward", "contradiction"]
)
def test_cli_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, case):
    path, message = _bad_files(tmp_path)[case]
    out = tmp_path / "stats.json"
    tb = tmp_path / "tb"
    parquet = tmp_path / "j.parquet"
    assert stats.main([str(path), "--out", str(out), "--tb", str(tb), "--parquet", str(parquet)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"augnes_jax.stats: error: {path}") and message in err
    assert not out.exists() and not tb.exists() and not parquet.exists()


def test_cli_runs_as_a_module(tmp_path):
    missing = tmp_path / "none.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "augnes_jax.stats", str(missing)], capture_output=True, text=True,
        cwd=Path(__file__).parent.parent,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr == f"augnes_jax.stats: error: {missing}: no such file\n"


def test_tensorboard_runs_are_named_from_the_capacity_fields(tmp_path, capsys):
    path = tmp_path / "judgments.jsonl"
    with JudgmentWriter(path) as w:
        for name, h, s in (("alpha", 8, 0), ("beta", 32, 0), ("h8-b100-s0", 32, 1)):
            w.append(make_judgments([0, 1], [1.0, 2.0], [3.0, 3.0], variant=name, hidden_dim=h,
                                    buffer_size=100, seed=s, epoch=0))  # fmt: skip
        # one experiment over two widths: one run per width
        for h in (8, 32):
            w.append(make_judgments([0], [0.0], [1.0], variant="mine", hidden_dim=h, buffer_size=100, seed=2))
    tb = tmp_path / "tb"
    assert stats.main([str(path), "--out", str(tmp_path / "s.json"), "--tb", str(tb)]) == 0
    assert capsys.readouterr().err == ""
    reader = TensorBoardReader(tb).reload()
    runs = {"h8-b100-s0": "alpha", "h32-b100-s0": "beta", "h32-b100-s1": "h8-b100-s0",
            "h8-b100-s2": "mine", "h32-b100-s2": "mine"}  # fmt: skip
    assert reader.runs() == sorted(runs)
    for run, variant in runs.items():
        hp = reader.hparams(run)
        assert hp["variant"] == variant and f"h{int(hp['hidden_dim'])}-b100-s{int(hp['seed'])}" == run
    # regrets 2 and 1 on goals 0 and 1
    assert reader.scalars("h32-b100-s1", "regret/avg")[1].tolist() == [1.5]
    assert reader.scalars("h32-b100-s2", "regret/avg")[1].tolist() == [1.0]


def test_runs_without_a_capacity_of_their_own_keep_their_names():
    G = GroupKey
    groups = [G("greedy", 8, 10, 0), G("cem", 8, 10, 0), G("mine", 16, 10, 0), G("mine", 16, 10, -1),
              G("mine", 32, -1, -1), G("h4-b10-s0", -1, -1, -1), G("a/b", -1, -1, -1), G("..", -1, -1, -1)]  # fmt: skip
    assert stats.run_names(groups) == [
        "greedy", "cem", "h16-b10-s0", "mine@h16-b10", "mine@h32", "h4-b10-s0@none", "a_b", "__",
    ]  # fmt: skip


def test_a_log_the_controller_cannot_read_gets_a_warning(tmp_path, capsys):
    assert stats.main([str(FIXTURE), "--out", str(tmp_path / "s.json"), "--tb", str(tmp_path / "tb")]) == 0
    err = capsys.readouterr().err
    assert err == (f"warning: {FIXTURE}: no hidden_dim field: nothing to compare; the TensorBoard runs "
                   "keep their experiments' names\n")  # fmt: skip
    assert stats.main([str(FIXTURE), "--out", str(tmp_path / "s2.json")]) == 0
    assert capsys.readouterr().err == ""  # without --tb there is nothing to warn about
