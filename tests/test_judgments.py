"""The judgment log: schema checks, crash safety, and the polars reader against json.loads."""

import json
import math
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from augnes_jax import judgments as J
from augnes_jax import regret
from augnes_jax.judgments import (
    JudgmentError,
    Judgments,
    JudgmentWriter,
    iter_judgments,
    make_judgments,
    read_judgments,
)
from augnes_jax.judgments_schema import is_json_object

FIXTURES = Path(__file__).parent / "fixtures"
COLUMNS = J.INT_FIELDS + J.FLOAT_FIELDS + J.STR_FIELDS + ("extra",)


def assert_same(a, b):
    """Every column of two Judgments is equal (NaN equal to NaN, floats bit for bit)."""
    assert len(a) == len(b)
    for name in COLUMNS:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype, name
            np.testing.assert_array_equal(x, y, err_msg=name)
        else:
            assert [dict(v) if name == "extra" else v for v in x] == [
                dict(v) if name == "extra" else v for v in y
            ], name


def write_lines(path, lines, end="\n"):
    Path(path).write_text("".join(line + end for line in lines), encoding="utf-8")


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def test_make_judgments_fills_schema_regret_and_advantage():
    recs = make_judgments(
        np.array([0, 2]),
        np.array([1.5, -2.0], np.float32),
        np.array([3.0, 0.5], np.float32),
        np.array([0.5, -3.0], np.float32),
        np.array([10, 11]),
        run="r",
        variant="h64-b10000-s0",
        hidden_dim=64,
        buffer_size=10000,
        seed=0,
        epoch=3,
        strategy="cem",
        oracle="value_iteration",
        ts="2025-01-01T00:00:00.000Z",
    )
    assert recs[0] == {
        "schema": 1, "ts": "2025-01-01T00:00:00.000Z", "run": "r", "variant": "h64-b10000-s0",
        "hidden_dim": 64, "buffer_size": 10000, "seed": 0, "epoch": 3, "episode": 10,
        "strategy": "cem", "goal_id": 0, "reward": 1.5, "optimal_reward": 3.0,
        "baseline_reward": 0.5, "regret": 1.5, "advantage": 1.0, "oracle": "value_iteration",
    }  # fmt: skip
    assert recs[1]["regret"] == 2.5 and recs[1]["advantage"] == 1.0
    # float32 inputs are written with their shortest decimals
    (short,) = make_judgments([1], np.array([0.1], np.float32), np.array([0.3], np.float32))
    assert short["reward"] == 0.1 and short["optimal_reward"] == 0.3
    assert short["regret"] == float(str(np.float32(0.3) - np.float32(0.1)))
    assert "baseline_reward" not in short and "advantage" not in short


def test_make_judgments_rejects_non_finite():
    with pytest.raises(ValueError, match=r"reward\[1\]"):
        make_judgments([0, 1], [1.0, np.nan], [2.0, 2.0])


def test_writer_round_trip_keeps_every_value(tmp_path):
    rng = np.random.default_rng(0)
    n = 300
    reward = rng.normal(-10, 3, n).astype(np.float32)
    optimal = reward + np.abs(rng.normal(2, 1, n)).astype(np.float32)
    baseline = reward - rng.normal(5, 1, n).astype(np.float32)
    goals = rng.integers(0, 7, n)
    path = tmp_path / "judgments.jsonl"
    with JudgmentWriter(path) as w:
        for lo in range(0, n, 100):
            sl = slice(lo, lo + 100)
            w.append(make_judgments(goals[sl], reward[sl], optimal[sl], baseline[sl],
                                    np.arange(lo, lo + 100), variant="v", epoch=lo // 100))  # fmt: skip
        assert w.records_written == n
    j = read_judgments(path)
    np.testing.assert_array_equal(j.goal_id, goals)
    # the file holds float32 values exactly (shortest decimals round-trip)
    np.testing.assert_array_equal(j.reward.astype(np.float32), reward)
    np.testing.assert_array_equal(j.optimal_reward.astype(np.float32), optimal)
    np.testing.assert_array_equal(j.regret.astype(np.float32), optimal - reward)
    np.testing.assert_array_equal(j.advantage.astype(np.float32), reward - baseline)
    np.testing.assert_array_equal(j.epoch, np.repeat([0, 1, 2], 100))
    assert j.variant == ["v"] * n and j.hidden_dim.tolist() == [-1] * n
    assert_same(j, read_judgments(path, fast=False))


def test_writer_output_read_whole_in_batches_and_line_by_line_agree(tmp_path):
    path = tmp_path / "judgments.jsonl"
    rng = np.random.default_rng(3)
    with JudgmentWriter(path) as w:
        for epoch in range(3):
            r = rng.normal(0, 100, 500).astype(np.float32)
            w.append(make_judgments(rng.integers(0, 5, 500), r, r + 1e-3, r - 7, np.arange(500),
                                    variant=f"h{8 << epoch}-b100-s0", epoch=epoch, ts=f"t{epoch}"))  # fmt: skip
    whole = read_judgments(path)
    assert len(whole) == 1500
    assert whole.variant[499:501] == ["h8-b100-s0", "h16-b100-s0"] and whole.ts[-1] == "t2"
    assert_same(whole, read_judgments(path, fast=False))
    batches = list(iter_judgments(path, batch_bytes=4096))
    assert len(batches) > 30 and all(len(b) for b in batches)
    assert_same(whole, Judgments.concat(batches))
    sub = whole.take(np.array([1499, 0]))
    assert sub.episode.tolist() == [499, 0] and sub.variant == ["h32-b100-s0", "h8-b100-s0"]
    assert len(whole.take(whole.epoch == 1)) == 500
    whole.regret[0] = 0.0  # columns are the caller's to change


def test_string_columns_held_by_polars_read_as_the_lines_say(tmp_path):
    # A sweep's batches make runs of equal strings: the fast reader hands those columns over
    # as polars columns, expanded once per run when read. to_polars, before any field is read,
    # must equal the frame json.loads' columns give, and the lists must equal them too.
    path = tmp_path / "judgments.jsonl"
    with JudgmentWriter(path) as w:
        for epoch in range(4):
            for variant in ("h8", "h64"):
                w.append(make_judgments(np.arange(100) % 7, np.ones(100), np.full(100, 2.0),
                                        np.zeros(100), np.arange(100), variant=variant,
                                        epoch=epoch, ts=f"2026-01-0{epoch + 1}T00:00:00Z"))  # fmt: skip
    fast, slow = read_judgments(path), read_judgments(path, fast=False)
    assert fast.to_polars().equals(slow.to_polars())
    assert fast.variant == slow.variant == (["h8"] * 100 + ["h64"] * 100) * 4
    assert fast.ts[::200] == [f"2026-01-0{e}T00:00:00Z" for e in (1, 2, 3, 4)]
    assert fast.ts[99] is fast.ts[0]  # one string object per run
    fast.variant[0] = "mine"  # the list, once read, is the caller's to change
    assert fast.variant[0] == "mine" and fast.take([0]).variant == ["mine"]


def test_writer_checks_the_whole_batch_before_writing(tmp_path):
    path = tmp_path / "j.jsonl"
    good = {"goal_id": 0, "reward": 1.0, "optimal_reward": 2.0}
    with JudgmentWriter(path) as w:
        w.append([good])
        with pytest.raises(JudgmentError, match=r"record 1 of the batch: reward must be finite"):
            w.append([good, {"goal_id": 1, "reward": math.inf, "optimal_reward": 2.0}])
    assert len(read_judgments(path)) == 1


def test_writer_repairs_a_torn_last_line_and_loses_nothing_else(tmp_path):
    path = tmp_path / "judgments.jsonl"
    with JudgmentWriter(path) as w:
        w.append(make_judgments([0, 1, 2], [1.0, 2.0, 3.0], [4.0, 4.0, 4.0]))
    with open(path, "ab") as f:  # a crash in the middle of the fourth line
        f.write(b'{"goal_id": 3, "reward": 1.0, "optimal_re')
    with pytest.warns(UserWarning, match=rf"{path}:4: torn last line"):
        w = JudgmentWriter(path).open()
    w.append(make_judgments([5], [0.5], [1.0]))
    w.close()
    j = read_judgments(path)
    assert j.goal_id.tolist() == [0, 1, 2, 5]
    np.testing.assert_array_equal(j.regret, [3.0, 2.0, 1.0, 0.5])


def test_writer_keeps_a_complete_last_line_that_lacks_its_newline(tmp_path):
    path = tmp_path / "judgments.jsonl"
    path.write_text('{"goal_id": 0, "reward": 1, "regret": 2}')
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with JudgmentWriter(path) as w:
            w.append([{"goal_id": 1, "reward": 2, "regret": 0.5}])
    assert read_judgments(path).goal_id.tolist() == [0, 1]


# --------------------------------------------------------------------------------------------
# Reading: good files
# --------------------------------------------------------------------------------------------


def test_fixture_columns_by_hand():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no torn line; the blank line is skipped quietly
        j = read_judgments(FIXTURES / "judgments_small.jsonl")
    assert len(j) == 9
    assert j.goal_id.tolist() == [0, 0, 1, 1, 1, 0, 2, 2, 2]
    assert j.strategy == ["greedy"] * 5 + ["cem"] * 4
    np.testing.assert_array_equal(j.regret, [2.0, 1.0, 1.0, 0.0, 3.0, 0.5, 2.0, 1.0, 0.5])
    np.testing.assert_array_equal(
        j.advantage, [1.0, 2.0, 3.0, 4.0, 1.0, 2.5, np.nan, np.nan, np.nan]
    )
    np.testing.assert_array_equal(j.optimal_reward[5], np.nan)
    assert j.episode.tolist() == [0, 1, 2, -1, -1, -1, -1, -1, -1]
    assert j.schema.tolist() == [1, 1, 1, -1, -1, -1, -1, -1, -1]
    assert j.oracle[4] == "given" and j.run[8] == "external" and j.variant == [None] * 9
    assert dict(j.extra[2]) == {"note": "compact"}
    assert dict(j.extra[6]) == {"info": {"source": "other-system"}}
    assert dict(j.extra[0]) == {}
    assert_same(j, read_judgments(FIXTURES / "judgments_small.jsonl", fast=False))


def test_torn_last_line_is_skipped_with_a_warning(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_text('{"goal_id":0,"reward":1,"regret":1}\n{"goal_id":1,"reward":2,"regret":1}\n{"goal_id":2,"rew')
    with pytest.warns(UserWarning, match=rf"{path}:3: torn last line"):
        j = read_judgments(path)
    assert j.goal_id.tolist() == [0, 1]


def test_unterminated_but_complete_last_line_is_read(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_text('{"goal_id":0,"reward":1,"regret":1}\n{"goal_id":1,"reward":2,"regret":1}')
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_judgments(path).goal_id.tolist() == [0, 1]


def test_crlf_bom_blank_lines_and_escapes_are_accepted(tmp_path):
    path = tmp_path / "j.jsonl"
    body = '{"goal_id":0,"reward":1,"regret":1,"variant":"a\\"b"}\r\n\r\n{"goal_id":1,"reward":2,"regret":1}\r\n'
    path.write_bytes(b"\xef\xbb\xbf" + body.encode())
    j = read_judgments(path)
    assert j.goal_id.tolist() == [0, 1] and j.variant == ['a"b', None]


# --------------------------------------------------------------------------------------------
# Reading: bad files name the line
# --------------------------------------------------------------------------------------------

GOOD = '{"goal_id": 0, "reward": 1.0, "optimal_reward": 2.0}'


@pytest.mark.parametrize(
    "bad, message",
    [
        ('{"reward": 1.0, "optimal_reward": 2.0}', "missing required field 'goal_id'"),
        ('{"goal_id": 0, "optimal_reward": 2.0}', "missing required field 'reward'"),
        ('{"goal_id": 0, "reward": "abc", "optimal_reward": 2.0}', 'reward must be a number, got "abc"'),
        ('{"goal_id": 0, "reward": true, "optimal_reward": 2.0}', "reward must be a number, got true"),
        ('{"goal_id": 0, "reward": NaN, "optimal_reward": 2.0}', "reward must be finite, got NaN"),
        ('{"goal_id": 0, "reward": -Infinity, "optimal_reward": 2.0}', "reward must be finite, got -Infinity"),
        ('{"goal_id": 0, "reward": 1e400, "optimal_reward": 2.0}', "reward must be finite, got Infinity"),
        ('{"goal_id": 0, "reward": 1.0}', "needs 'optimal_reward' or 'regret'"),
        ('{"goal_id": 0, "reward": 1.0, "optimal_reward": 2.0, "regret": 1.5}',
         "regret 1.5 contradicts optimal_reward - reward = 1.0"),
        ('{"goal_id": -1, "reward": 1.0, "optimal_reward": 2.0}', "goal_id must be a non-negative integer, got -1"),
        ('{"goal_id": 1.5, "reward": 1.0, "optimal_reward": 2.0}', "goal_id must be a non-negative integer, got 1.5"),
        ('{"goal_id": 0, "reward": 1.0, "optimal_reward": 2.0, "variant": 3}', "variant must be a string, got 3"),
        ('{"goal_id": 0, "reward": 1.0, "optimal_reward": 2.0, "epoch": "x"}',
         'epoch must be a non-negative integer, got "x"'),
        ('[1, 2]', "expected a JSON object, got list"),
        ('{"goal_id": 0, "reward": 1.0,, }', "invalid JSON"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("fast", [True, False])
def test_bad_line_is_an_error_naming_its_line(tmp_path, bad, message, fast):
    path = tmp_path / "j.jsonl"
    write_lines(path, [GOOD, GOOD, bad, GOOD])
    with pytest.raises(JudgmentError) as err:
        read_judgments(path, fast=fast)
    text = str(err.value)
    assert text.startswith(f"{path}:3: ") and message in text and "\n" not in text


def test_regret_tolerance_accepts_float32_rounding_and_nothing_more(tmp_path):
    # A float32 writer printing the full float64 expansion of its regret: 1000.4000244140625
    # against optimal_reward - reward = 1000.4. The tolerance scales with max(|opt|, |reward|).
    path = tmp_path / "j.jsonl"
    opt, rew = 0.1, -1000.3
    r32 = float(np.float32(opt) - np.float32(rew))
    assert abs(r32 - (opt - rew)) > 1e-5
    write_lines(path, [json.dumps({"goal_id": 0, "reward": rew, "optimal_reward": opt, "regret": r32})])
    assert read_judgments(path).regret[0] == r32
    write_lines(path, [json.dumps({"goal_id": 0, "reward": rew, "optimal_reward": opt,
                                   "regret": 1000.4 + 0.01})])  # fmt: skip
    with pytest.raises(JudgmentError, match=":1: regret 1000.41 contradicts"):
        read_judgments(path)


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(JudgmentError, match=rf"^{tmp_path / 'nope.jsonl'}: no such file$"):
        read_judgments(tmp_path / "nope.jsonl")
    for content in ("", "\n\n  \n"):
        (tmp_path / "e.jsonl").write_text(content)
        with pytest.raises(JudgmentError, match=r"e.jsonl: no judgments$"):
            read_judgments(tmp_path / "e.jsonl")


def test_error_line_numbers_across_batches(tmp_path):
    path = tmp_path / "j.jsonl"
    lines = [json.dumps({"goal_id": i % 3, "reward": i, "regret": 1}) for i in range(200)]
    lines[137] = lines[137].replace('"regret": 1', '"regret": "one"')
    write_lines(path, lines)
    with pytest.raises(JudgmentError, match=rf"^{path}:138: regret must be a number"):
        read_judgments(path)
    for batch in (1, 256, 5000):
        with pytest.raises(JudgmentError, match=rf"^{path}:138: regret must be a number"):
            list(iter_judgments(path, batch_bytes=batch))


def test_torn_last_line_and_bom_in_batches(tmp_path):
    path = tmp_path / "j.jsonl"
    lines = [json.dumps({"goal_id": i, "reward": 1.0, "regret": 0.5}) for i in range(50)]
    path.write_bytes(b"\xef\xbb\xbf" + ("\n".join(lines) + '\n{"goal_id": 50, "rew').encode())
    for batch in (1, 100, 1 << 20):
        with pytest.warns(UserWarning, match=rf"{path}:51: torn last line"):
            got = Judgments.concat(list(iter_judgments(path, batch_bytes=batch)))
        assert got.goal_id.tolist() == list(range(50))
    with pytest.raises(ValueError, match="batch_bytes must be positive"):
        next(iter_judgments(path, batch_bytes=0))
    (tmp_path / "e.jsonl").write_text("\n \n")
    with pytest.raises(JudgmentError, match=r"e.jsonl: no judgments$"):
        list(iter_judgments(tmp_path / "e.jsonl", batch_bytes=1))


def test_aggregating_batches_equals_aggregating_the_whole_file(tmp_path):
    """Per-goal aggregates of a file read in small batches, merged, equal those of the whole
    file and a float64 NumPy reference computed from the records themselves."""
    path = tmp_path / "judgments.jsonl"
    rng = np.random.default_rng(7)
    records = []
    with JudgmentWriter(path) as w:
        for epoch in range(6):
            n = int(rng.integers(50, 400))
            reward = rng.normal(-5, 2, n).astype(np.float32)
            optimal = reward + rng.gamma(2.0, 1.0, n).astype(np.float32)
            recs = make_judgments(rng.integers(0, 5, n), reward, optimal, epoch=epoch)
            records += recs
            w.append(recs)
    goals = np.array([r["goal_id"] for r in records])
    regrets = np.array([r["regret"] for r in records], np.float64)
    G = 5
    count = np.bincount(goals, minlength=G)
    total = np.bincount(goals, weights=regrets, minlength=G)
    mean = total / count
    m2 = np.bincount(goals, weights=(regrets - mean[goals]) ** 2, minlength=G)

    batches = list(iter_judgments(path, batch_bytes=2048))
    assert len(batches) > 20
    agg = regret.empty(G)
    for b in batches:
        agg = regret.merge(agg, regret.aggregate(b.regret.astype(np.float32), b.goal_id, G))
    whole = read_judgments(path)
    ref = regret.aggregate(whole.regret.astype(np.float32), whole.goal_id, G)
    np.testing.assert_array_equal(np.asarray(agg.count), count)
    np.testing.assert_array_equal(np.asarray(ref.count), count)
    for got in (agg, ref):
        np.testing.assert_allclose(np.asarray(got.sum), total, rtol=1e-6)
        np.testing.assert_allclose(np.asarray(got.mean), mean, rtol=1e-6)
        np.testing.assert_allclose(np.asarray(got.m2), m2, rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(agg.min), [regrets[goals == g].astype(np.float32).min() for g in range(G)])
    np.testing.assert_array_equal(np.asarray(agg.max), [regrets[goals == g].astype(np.float32).max() for g in range(G)])


_PEAK_RSS = """
import os, sys, threading
from augnes_jax.judgments import iter_judgments, read_judgments

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

path, batch = sys.argv[1], int(sys.argv[2])
next(iter_judgments(path, batch_bytes=4096))  # polars imported and its threads started
base, peak, done = rss(), [0], threading.Event()

def sample():
    while not done.wait(0.0005):
        peak[0] = max(peak[0], rss())

t = threading.Thread(target=sample)
t.start()
if batch:
    rows = sum(len(b) for b in iter_judgments(path, batch_bytes=batch))
else:
    rows = len(read_judgments(path))
done.set()
t.join()
print(rows, max(peak[0], rss()) - base)
"""


def test_batches_bound_the_memory_of_a_large_file(tmp_path):
    """A 48 MB file read in 1 MiB batches raises the reader's resident memory (sampled: polars
    allocates outside Python) by less than 24 MiB; read whole it takes more than the file."""
    path = tmp_path / "judgments.jsonl"
    line = make_judgments([3], [1.5], [2.25], [0.5], [7], run="r", variant="h64-b10000-s0",
                          hidden_dim=64, buffer_size=10000, seed=0, epoch=1, strategy="cem",
                          oracle="value_iteration", ts="2026-01-01T00:00:00.000Z")[0]  # fmt: skip
    text = (json.dumps(line, separators=(",", ":")) + "\n").encode()
    rows = 48_000_000 // len(text)
    path.write_bytes(text * rows)

    def peak(batch: int) -> int:
        proc = subprocess.run([sys.executable, "-c", _PEAK_RSS, str(path), str(batch)],
                              capture_output=True, text=True, check=True,
                              cwd=Path(__file__).parent.parent)  # fmt: skip
        got_rows, grew = map(int, proc.stdout.split())
        assert got_rows == rows
        return grew

    assert peak(1 << 20) < 24 * 2**20
    assert peak(0) > 48_000_000


# --------------------------------------------------------------------------------------------
# The fast path equals json.loads
# --------------------------------------------------------------------------------------------

SEPARATORS = [(",", ":"), (", ", ": "), (" , ", " : "), (",  ", ":")]


def number_text(draw, value: float) -> str:
    fmt = draw(st.sampled_from(["repr", "g", "e", "E", "f2", "f32"]))
    if fmt == "repr":
        return repr(value)
    if fmt == "g":
        return f"{value:.6g}".replace("inf", "1e999")
    if fmt == "e":
        return f"{value:.3e}"
    if fmt == "E":
        return f"{value:.9E}"
    if fmt == "f2":
        return f"{value:.2f}"
    return str(np.float32(value))


@st.composite
def judgment_files(draw):
    """Returns (lines, records) in one to three layouts, all valid."""
    layouts = []
    for _ in range(draw(st.integers(1, 3))):
        optional = draw(st.lists(st.sampled_from(
            ["epoch", "episode", "seed", "variant", "strategy", "baseline_reward", "advantage",
             "note", "count", "flag", "missing", "ts"]), unique=True, max_size=6))  # fmt: skip
        keys = ["goal_id", "reward", draw(st.sampled_from(["optimal_reward", "regret", "both"]))]
        keys = keys[:2] + (["optimal_reward", "regret"] if keys[2] == "both" else [keys[2]])
        keys += optional
        order = draw(st.permutations(keys))
        layouts.append((order, draw(st.sampled_from(SEPARATORS)), draw(st.booleans())))
    finite = st.floats(-1e7, 1e7, allow_nan=False, allow_infinity=False)
    lines = []
    for _ in range(draw(st.integers(1, 25))):
        order, (comma, colon), ascii_only = draw(st.sampled_from(layouts))
        reward_t = number_text(draw, draw(finite))
        opt_t = number_text(draw, draw(finite))
        reward, opt = float(reward_t), float(opt_t)
        values = {
            "goal_id": str(draw(st.integers(0, 2**40))),
            "reward": reward_t,
            "optimal_reward": opt_t,
            "regret": repr(opt - reward) if "optimal_reward" in order else number_text(draw, draw(finite)),
            "baseline_reward": number_text(draw, draw(finite)),
            "advantage": number_text(draw, draw(finite)),
            "epoch": str(draw(st.integers(0, 10**6))),
            "episode": str(draw(st.integers(0, 2**62))),
            "seed": draw(st.sampled_from(["0", "7", "null"])),
            "variant": json.dumps(draw(st.text(max_size=12)), ensure_ascii=ascii_only),
            "strategy": draw(st.sampled_from(['"cem"', '"greedy"', "null"])),
            "note": json.dumps(draw(st.text(alphabet="abc é😀", max_size=5)), ensure_ascii=ascii_only),
            "count": draw(st.sampled_from(["-3", "0", "12345678901234567890", "1.5e3", "-0.0"])),
            "flag": draw(st.sampled_from(["true", "false", "null", "[1, 2]", '{"a": 1}'])),
            "missing": "null",
            "ts": '"2025-01-01T00:00:00Z"',
        }
        body = comma.join(f'"{k}"{colon}{values[k]}' for k in order)
        lines.append("{" + body + "}")
    return lines


def read_in_batches(path, batch: int) -> Judgments:
    """Returns the file read by iter_judgments in batches of ``batch`` bytes, joined."""
    return Judgments.concat(list(iter_judgments(path, batch_bytes=batch)))


@settings(max_examples=60, deadline=None)
@given(judgment_files(), st.sampled_from([0, 64, 1 << 22]))
def test_fast_reader_equals_json_loads_line_by_line(lines, batch):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "j.jsonl")
        write_lines(path, lines)
        fast = read_in_batches(path, batch) if batch else read_judgments(path)
        careful = read_judgments(path, fast=False)
        assert_same(fast, careful)
        # and json.loads itself, for the numbers
        recs = [json.loads(line) for line in lines]
        np.testing.assert_array_equal(fast.reward, [float(r["reward"]) for r in recs])
        assert fast.goal_id.tolist() == [r["goal_id"] for r in recs]


@st.composite
def batched_files(draw):
    """Returns lines written in batches that share their leading fields, as a sweep writes
    them, with at most one line whose shared prefix is corrupted (same length or not)."""
    lines = []
    for _ in range(draw(st.integers(1, 4))):
        prefix = {
            "schema": 1,
            "ts": draw(st.sampled_from(["2026-01-01T00:00:00Z", "2026-01-01T00:00:01Z"])),
            "variant": draw(st.sampled_from(["h8-s0", "h9-s0", "h16-s1"])),
            "seed": draw(st.sampled_from([0, 1, 7])),
            "epoch": draw(st.integers(0, 12)),
        }
        for _ in range(draw(st.integers(1, 40))):
            reward = draw(st.floats(-100, 100, allow_nan=False, width=32))
            optimal = draw(st.floats(-100, 100, allow_nan=False, width=32))
            rec = {**prefix, "episode": draw(st.integers(0, 999)), "goal_id": draw(st.integers(0, 9)),
                   "reward": reward, "optimal_reward": optimal, "regret": optimal - reward}  # fmt: skip
            lines.append(json.dumps(rec, separators=(",", ":")))
    corrupt = draw(st.sampled_from([None, ('"seed":', '"seed":-'), ('"seed":', '"seed":x'),
                                    ('"h', '"H'), ('"epoch":', '"epoch":1'), ('1,"ts"', '2,"ts"')]))  # fmt: skip
    if corrupt is not None:
        i = draw(st.integers(0, len(lines) - 1))
        lines[i] = lines[i].replace(*corrupt, 1)
    return lines


def outcome(read, *args, **kw):
    try:
        return read(*args, **kw)
    except JudgmentError as e:
        return str(e)


@settings(max_examples=60, deadline=None)
@given(batched_files(), st.sampled_from([0, 2048, 1 << 22]))
def test_fast_reader_on_sweep_batches_equals_json_loads(lines, batch):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "j.jsonl")
        write_lines(path, lines)
        fast = outcome(read_in_batches, path, batch) if batch else outcome(read_judgments, path)
        careful = outcome(read_judgments, path, fast=False)
        if isinstance(careful, str):
            assert fast == careful
        else:
            assert_same(fast, careful)


def test_sweep_batches_by_hand_and_a_bad_first_line(tmp_path):
    """Lines sharing their leading fields, as a sweep writes them, read by hand; a bad value in
    the first line of such a run is named by its line."""
    path = tmp_path / "j.jsonl"
    head = '{"schema":1,"variant":"h8","seed":%s,"epoch":3,"episode":%d,"goal_id":%d,"reward":%s,"regret":1}'
    lines = [head % ("0", i, i % 4, f"{i / 8:.3f}") for i in range(64)]
    write_lines(path, lines)
    j = read_judgments(path)
    assert j.seed.tolist() == [0] * 64 and j.epoch.tolist() == [3] * 64
    assert j.episode.tolist() == list(range(64)) and j.reward[9] == 1.125
    assert j.variant == ["h8"] * 64 and j.goal_id.tolist() == [i % 4 for i in range(64)]
    write_lines(path, [line.replace('"seed":0', '"seed":-1') for line in lines])
    with pytest.raises(JudgmentError, match=rf"^{path}:1: seed must be a non-negative integer"):
        read_judgments(path)


def test_strings_that_look_like_numbers_and_numbers_where_strings_belong(tmp_path):
    """polars reads {"variant": 3} as the string "3": the reader tells the two apart."""
    path = tmp_path / "j.jsonl"
    rows = [{"goal_id": 0, "reward": 1.0, "regret": 1.0, "variant": v, "ts": t}
            for v, t in (("3", "1.5"), ("true", "[1]"), ("h8", "{}"))]  # fmt: skip
    write_lines(path, [json.dumps(r) for r in rows])
    j = read_judgments(path)
    assert j.variant == ["3", "true", "h8"] and j.ts == ["1.5", "[1]", "{}"]
    for bad, shown in ((3, "3"), (1.5, "1.5"), (True, "true"), ([1], "[1]"), ({"a": 1}, "{'a': 1}")):
        write_lines(path, [json.dumps(rows[0]), json.dumps({**rows[2], "variant": bad})])
        with pytest.raises(JudgmentError) as err:
            read_judgments(path)
        assert str(err.value) == f"{path}:2: variant must be a string, got {shown}"
    # Only the bad value differs from a clean sweep log; an object holding one string key has
    # the quotes of the string it replaces, so only the string check can tell.
    good = json.dumps({**rows[2], "ts": "2026-01-01T00:00:00.000Z"})
    for field in ("variant", "ts", "run"):
        for bad, shown in ((3, "3"), (True, "true"), ({"a": 1}, "{'a': 1}"), (["a"], "['a']")):
            write_lines(path, [good] * 70 + [json.dumps({**json.loads(good), field: bad})] + [good] * 9)
            with pytest.raises(JudgmentError) as err:
                read_judgments(path)
            assert str(err.value) == f"{path}:71: {field} must be a string, got {shown}"


def test_extra_fields_anywhere_are_kept_with_json_loads_values(tmp_path):
    """Extra fields first seen after polars' schema sample, explicit nulls, ints beside floats,
    nested values and escapes: every row's extra fields are json.loads' own."""
    path = tmp_path / "j.jsonl"
    lines = [f'{{"goal_id":{i % 3},"reward":{i}.5,"regret":1}}' for i in range(300)]
    lines[250] = '{"goal_id":1,"reward":2,"regret":1,"late":7,"seed":null}'
    lines[260] = '{"goal_id":1,"reward":2,"regret":1,"late":7.5,"nested":{"a":[1,{"b":null}]}}'
    lines[270] = '{"goal_id":1,"reward":2,"regret":1,"late":null,"k\\u00e9y":"a\\"b:c"}'
    write_lines(path, lines)
    j = read_judgments(path)
    want = [{}] * 300
    want[250], want[260] = {"late": 7}, {"late": 7.5, "nested": {"a": [1, {"b": None}]}}
    want[270] = {"late": None, "k\u00e9y": 'a"b:c'}
    assert [dict(e) for e in j.extra] == want
    assert type(j.extra[250]["late"]) is int and j.seed[250] == -1
    assert_same(j, read_judgments(path, fast=False))
    assert_same(j, read_in_batches(path, 1000))
    # without any escape in the file, and with one late key alone
    for keep in ((250, 260), (260,)):
        write_lines(path, [line if i in keep or i < 250 else lines[0] for i, line in enumerate(lines)])
        j = read_judgments(path)
        assert [dict(e) for e in j.extra] == [want[i] if i in keep else {} for i in range(300)]


def test_from_records_checks_like_the_reader(tmp_path):
    recs = make_judgments([0, 2], np.array([1.5, -2.0]), np.array([3.0, 0.5]), variant="v", epoch=1)
    recs[1]["note"] = {"x": 1}
    path = tmp_path / "j.jsonl"
    with JudgmentWriter(path) as w:
        w.append(recs)
    j = Judgments.from_records(recs, path="mine")
    assert_same(j, read_judgments(path))
    assert j.path == "mine" and j.regret.tolist() == [1.5, 2.5] and dict(j.extra[1]) == {"note": {"x": 1}}
    assert len(Judgments.from_records([])) == 0 and Judgments.from_records([]).goal_id.dtype == np.int64
    with pytest.raises(JudgmentError, match=r"^record 1: regret 9.0 contradicts"):
        Judgments.from_records([recs[0], {**recs[1], "regret": 9.0}])
    with pytest.raises(JudgmentError, match=r"^record 0: expected a JSON object, got list"):
        Judgments.from_records([[1, 2]])
    for bad in ("abc", {"goal_id": 0}, 3):
        with pytest.raises(TypeError, match="expected a list of judgment records"):
            Judgments.from_records(bad)


def test_the_judgments_module_only_gathers_the_names_of_the_job_modules():
    """``augnes_jax.judgments`` is the front door: imports and ``__all__``, nothing of its own."""
    import ast
    import importlib
    import inspect

    tree = ast.parse(inspect.getsource(J))
    for node in tree.body:
        doc = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        names_all = isinstance(node, ast.Assign) and [t.id for t in node.targets] == ["__all__"]
        assert doc or names_all or isinstance(node, ast.ImportFrom), ast.dump(node)[:80]
    homes = [importlib.import_module(f"augnes_jax.{m}") for m in
             ("judgments_schema", "judgments_writer", "judgments_columns", "judgments_reader", "clock")]
    for name in J.__all__:
        owners = [m for m in homes if name in vars(m) and name in getattr(m, "__all__", ())]
        assert len(owners) == 1 and getattr(J, name) is getattr(owners[0], name), name


@pytest.mark.parametrize("tail, whole", [
    (b'{"goal_id":1,"reward":0.5}', True), (b'{}', True), (b' {"a":[1,{"b":2}]} ', True),
    (b'{"goal_id":1,"rew', False), (b'[1,2]', False), (b'5', False), (b'"x"', False),
    (b'', False), (b'{"a":1} {"b":2}', False), (b'\xff\xfe', False), (b'{"a":"\xff"}', False),
])  # fmt: skip
def test_a_complete_last_object_is_told_from_a_torn_write(tail, whole):
    assert is_json_object(tail) is whole


def test_fast_path_handles_the_numbers_json_allows(tmp_path):
    tokens = ["0", "-0", "7", "-12", "0.5", "-0.0", "1e3", "1E-3", "2.5e+10", "123456789012345678",
              "0.1", "9007199254740993", "1.7976931348623157e308", "5e-324", "0.30000000000000004",
              "123.456e-7", "1e22", "1e23", "-9.622809"]  # fmt: skip
    path = tmp_path / "j.jsonl"
    write_lines(path, [f'{{"goal_id":1,"reward":{t},"regret":1,"x":{t}}}' for t in tokens])
    j = read_judgments(path)
    np.testing.assert_array_equal(j.reward, [float(t) for t in tokens])
    assert [e["x"] for e in j.extra] == [json.loads(t) for t in tokens]
    assert [type(e["x"]) for e in j.extra] == [type(json.loads(t)) for t in tokens]


def test_finite_values_whose_sum_overflows_are_read(tmp_path):
    # The fast path proves a float column finite by its sum; these finite values overflow it.
    path = tmp_path / "j.jsonl"
    write_lines(path, [f'{{"goal_id":{g},"reward":{r},"optimal_reward":{r}}}'
                       for g, r in enumerate(["1.7e308", "1.7e308", "-1.7e308", "-1.7e308"])])  # fmt: skip
    j = read_judgments(path)
    np.testing.assert_array_equal(j.reward, [1.7e308, 1.7e308, -1.7e308, -1.7e308])
    np.testing.assert_array_equal(j.regret, np.zeros(4))
    assert_same(j, read_judgments(path, fast=False))


@pytest.mark.parametrize("token", ["01", "1.", ".5", "+1", "1e", "--1", "1.2.3", "0x10", "1e+", "-"])
def test_fast_path_rejects_what_json_rejects(tmp_path, token):
    path = tmp_path / "j.jsonl"
    write_lines(path, [GOOD] * 3 + [f'{{"goal_id": 0, "reward": {token}, "optimal_reward": 2.0}}'])
    with pytest.raises(JudgmentError, match=rf"^{path}:4: invalid JSON"):
        read_judgments(path)


def test_large_goal_ids_and_int64_limits(tmp_path):
    path = tmp_path / "j.jsonl"
    big = 2**63 - 1
    write_lines(path, [f'{{"goal_id":{big},"reward":1,"regret":1}}'] * 3)
    assert read_judgments(path).goal_id.tolist() == [big] * 3
    write_lines(path, [f'{{"goal_id":{big + 1},"reward":1,"regret":1}}'] * 3)
    with pytest.raises(JudgmentError, match=r":1: goal_id must be a non-negative integer"):
        read_judgments(path)


def test_a_long_extra_key_and_many_short_lines(tmp_path):
    """A 40 kB key in the first lines (the old parser's worst case) beside 5000 short lines."""
    path = tmp_path / "j.jsonl"
    key = "K" * 40_000
    lines = [f'{{"{key}": 1, "goal_id": 0, "reward": {r}, "optimal_reward": 1}}' for r in (0.5, 0.25)]
    lines += [f'{{"k": 1, "goal_id": {i}, "reward": 0.5, "optimal_reward": 1}}' for i in range(5000)]
    write_lines(path, lines)
    j = read_judgments(path)
    assert dict(j.extra[0]) == {key: 1} and dict(j.extra[2]) == {"k": 1}
    assert_same(j, read_judgments(path, fast=False))
