"""Judgments built in memory: from columns and from records, with the checks a line of the log gets."""

import json
import math

import numpy as np
import pytest

from augnes_jax import stats
from augnes_jax.judgments import JudgmentError, Judgments, read_judgments
from augnes_jax.judgments_columns import as_judgments
from augnes_jax.judgments_schema import FLOAT_FIELDS, INT_FIELDS, STR_FIELDS


def assert_same(a: Judgments, b: Judgments) -> None:
    assert len(a) == len(b)
    for name in INT_FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
        assert getattr(a, name).dtype == np.int64, name
    for name in FLOAT_FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)  # NaN == NaN here
        assert getattr(a, name).dtype == np.float64, name
    for name in STR_FIELDS:
        assert getattr(a, name) == getattr(b, name), name
    assert [dict(e) for e in a.extra] == [dict(e) for e in b.extra]


def _records(columns: dict, n: int) -> list[dict]:
    """Returns the rows of ``columns`` as records, by hand: scalars repeat, None leaves a field out."""
    out = []
    for i in range(n):
        rec = {}
        for name, col in columns.items():
            v = col if np.ndim(col) == 0 and not isinstance(col, list) else col[i]
            if v is None:
                continue
            rec[name] = v.item() if isinstance(v, np.generic) else v
        out.append(rec)
    return out


def test_numeric_arrays_give_the_columns_from_records_gives():
    rng = np.random.default_rng(0)
    n = 50
    reward = rng.normal(size=n).astype(np.float32)
    optimal = reward + rng.uniform(0, 2, n)
    cols = {
        "goal_id": rng.integers(0, 5, n), "reward": reward, "optimal_reward": optimal,
        "baseline_reward": rng.normal(size=n), "epoch": np.int32(3), "hidden_dim": 64,
        "episode": np.arange(n, dtype=np.uint16), "variant": "mine", "run": np.array(["r"] * n),
    }  # fmt: skip
    got = Judgments.from_columns(**cols)
    assert_same(got, Judgments.from_records(_records(cols, n)))
    # regret and advantage as the reader fills them: optimal - reward, reward - baseline (float64)
    np.testing.assert_array_equal(got.regret, optimal - reward.astype(np.float64))
    np.testing.assert_array_equal(got.advantage, reward.astype(np.float64) - cols["baseline_reward"])
    assert got.epoch.tolist() == [3] * n and got.seed.tolist() == [-1] * n
    assert got.variant == ["mine"] * n and got.strategy == [None] * n


def test_lists_with_missing_entries_give_the_columns_from_records_gives():
    cols = {
        "goal_id": [0, 1, 2, 1], "reward": [1.0, 2, 0.5, -3.0], "optimal_reward": [2.0, None, 1.0, None],
        "regret": [None, 4.0, None, 1.5], "epoch": [0, None, 1, 1], "variant": ["a", "b", None, "a"],
        "seed": np.array([0, 1, 2, 3], np.uint8),
    }  # fmt: skip
    got = Judgments.from_columns(**cols)
    assert_same(got, Judgments.from_records(_records(cols, 4)))
    assert got.regret.tolist() == [1.0, 4.0, 0.5, 1.5] and got.epoch.tolist() == [0, -1, 1, 1]
    assert np.isnan(got.optimal_reward[[1, 3]]).all() and got.variant[2] is None


def test_scalars_alone_are_one_judgment_and_an_empty_column_none():
    one = Judgments.from_columns(goal_id=2, reward=1.0, regret=0.25, strategy="s")
    assert len(one) == 1 and one.goal_id.tolist() == [2] and one.regret.tolist() == [0.25]
    assert len(Judgments.from_columns(goal_id=[], reward=[], regret=[])) == 0


# Each case: columns and the same values as one JSON line of a log; the reader's problem for
# that line must be the problem from_columns names for its row.
BAD = {
    "nan": ({"goal_id": [0, 1], "reward": [1.0, math.nan], "regret": 1.0},
            '{"goal_id": 1, "reward": NaN, "regret": 1.0}'),
    "inf": ({"goal_id": [0, 1], "reward": np.array([1.0, np.inf]), "regret": 1.0},
            '{"goal_id": 1, "reward": Infinity, "regret": 1.0}'),
    "negative_goal": ({"goal_id": np.array([0, -1]), "reward": 1.0, "regret": 1.0},
                      '{"goal_id": -1, "reward": 1.0, "regret": 1.0}'),
    "float_epoch": ({"goal_id": [0, 1], "reward": 1.0, "regret": 1.0, "epoch": [0, 1.5]},
                    '{"goal_id": 1, "reward": 1.0, "regret": 1.0, "epoch": 1.5}'),
    "bool_seed": ({"goal_id": [0, 1], "reward": 1.0, "regret": 1.0, "seed": [0, True]},
                  '{"goal_id": 1, "reward": 1.0, "regret": 1.0, "seed": true}'),
    "text_reward": ({"goal_id": [0, 1], "reward": [1.0, "x"], "regret": 1.0},
                    '{"goal_id": 1, "reward": "x", "regret": 1.0}'),
    "number_variant": ({"goal_id": [0, 1], "reward": 1.0, "regret": 1.0, "variant": ["a", 3]},
                       '{"goal_id": 1, "reward": 1.0, "regret": 1.0, "variant": 3}'),
    "contradiction": ({"goal_id": [0, 1], "reward": 1.0, "optimal_reward": 2.0, "regret": [1.0, 3.0]},
                      '{"goal_id": 1, "reward": 1.0, "optimal_reward": 2.0, "regret": 3.0}'),
    "no_optimum": ({"goal_id": [0, 1], "reward": 1.0, "regret": [1.0, None]},
                   '{"goal_id": 1, "reward": 1.0}'),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_row_is_named_with_the_problem_the_reader_names(tmp_path, case):
    cols, line = BAD[case]
    path = tmp_path / "log.jsonl"
    path.write_text('{"goal_id": 0, "reward": 1.0, "regret": 1.0}\n' + line + "\n")
    with pytest.raises(JudgmentError) as read_err:
        read_judgments(path)
    problem = str(read_err.value).removeprefix(f"{path}:2: ")
    with pytest.raises(JudgmentError) as err:
        Judgments.from_columns(**cols)
    assert str(err.value) == f"row 1: {problem}"


def test_missing_columns_lengths_shapes_and_names():
    with pytest.raises(JudgmentError, match=r"^missing required field 'goal_id'$"):
        Judgments.from_columns(reward=[1.0], regret=[1.0])
    with pytest.raises(JudgmentError, match=r"^missing required field 'reward'$"):
        Judgments.from_columns(goal_id=[0], regret=[1.0])
    with pytest.raises(JudgmentError, match=r"^reward has 3 rows, goal_id has 2$"):
        Judgments.from_columns(goal_id=[0, 1], reward=[1.0, 2.0, 3.0], regret=1.0)
    with pytest.raises(JudgmentError, match=r"^regret must be a scalar or one value per row, got shape \(2, 1\)$"):
        Judgments.from_columns(goal_id=[0, 1], reward=1.0, regret=np.ones((2, 1)))
    with pytest.raises(TypeError, match="unknown field 'optimal'"):
        Judgments.from_columns(goal_id=[0], reward=[1.0], optimal=[2.0])


def test_functions_that_take_judgments_name_what_they_got():
    records = [{"goal_id": 0, "reward": 1.0, "regret": 0.5}, {"goal_id": 1, "reward": 0.0, "regret": 2.0}]
    want = Judgments.from_records(records)
    assert_same(as_judgments(records, caller="f"), want)
    assert_same(as_judgments(tuple(records), caller="f"), want)
    assert_same(as_judgments(iter(records), caller="f"), want)
    assert as_judgments(want, caller="f") is want
    cases = [
        ("log.jsonl", "got str (read a log with read_judgments)"),
        (None, "got NoneType"),
        (3.5, "got float"),
        (records[0], "got dict"),
        ((1, 2), "got a tuple holding int at index 0"),
        ([records[0], "x"], "got a list holding str at index 1"),
        (want.to_polars(), "got DataFrame"),
    ]
    for value, tail in cases:
        with pytest.raises(TypeError) as err:
            stats.build_strategy_stats(value, source="s")
        assert str(err.value) == (
            f"build_strategy_stats: expected a list of judgment records (dicts) or Judgments, {tail}"
        ), value


def test_stats_of_columns_equal_stats_of_the_same_log(tmp_path):
    rng = np.random.default_rng(1)
    n = 40
    cols = {"goal_id": rng.integers(0, 3, n), "reward": rng.normal(size=n), "optimal_reward": 2.0,
            "baseline_reward": -1.0, "variant": np.where(np.arange(n) < 20, "a", "b").tolist()}  # fmt: skip
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _records(cols, n)))
    a = stats.build_strategy_stats(Judgments.from_columns(**cols), source="s")
    b = stats.build_strategy_stats(read_judgments(path), source="s")
    a.pop("generated_at"), b.pop("generated_at")
    assert a == b
