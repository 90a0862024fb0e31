"""The judgment log: schema checks, crash safety, and the fast reader against json.loads."""

import json
import math
import os
import tempfile
import warnings
from pathlib import Path

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings

from augnes_jax import judgments as J
from augnes_jax import judgments_parse as P
from augnes_jax.judgments import JudgmentError, JudgmentWriter, make_judgments, read_judgments

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


def test_writer_output_is_read_entirely_by_the_fast_path(tmp_path, monkeypatch):
    path = tmp_path / "judgments.jsonl"
    rng = np.random.default_rng(3)
    with JudgmentWriter(path) as w:
        for epoch in range(3):
            r = rng.normal(0, 100, 500).astype(np.float32)
            w.append(make_judgments(rng.integers(0, 5, 500), r, r + 1e-3, r - 7, np.arange(500),
                                    variant=f"h{8 << epoch}-b100-s0", epoch=epoch, ts=f"t{epoch}"))  # fmt: skip
    fallback = []
    careful = P._careful_lines
    monkeypatch.setattr(P, "_careful_lines", lambda ctx, rows: fallback.append(rows) or careful(ctx, rows))
    monkeypatch.setattr(J, "_CHUNK_BYTES", 4096)
    fast = read_judgments(path)
    assert fallback == [] and len(fast) == 1500
    assert fast.variant[499:501] == ["h8-b100-s0", "h16-b100-s0"] and fast.ts[-1] == "t2"
    monkeypatch.undo()
    assert_same(fast, read_judgments(path, fast=False))
    sub = fast.take(np.array([1499, 0]))
    assert sub.episode.tolist() == [499, 0] and sub.variant == ["h32-b100-s0", "h8-b100-s0"]
    assert len(fast.take(fast.epoch == 1)) == 500


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


def test_error_line_numbers_across_chunks_and_workers(tmp_path, monkeypatch):
    monkeypatch.setattr(J, "_CHUNK_BYTES", 256)
    path = tmp_path / "j.jsonl"
    lines = [json.dumps({"goal_id": i % 3, "reward": i, "regret": 1}) for i in range(200)]
    lines[137] = lines[137].replace('"regret": 1', '"regret": "one"')
    write_lines(path, lines)
    for workers in (1, 2):
        with pytest.raises(JudgmentError, match=rf"^{path}:138: regret must be a number"):
            read_judgments(path, workers=workers)


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


def read_in_chunks(read, path, chunk: int, **kwargs):
    """Returns ``read(path, **kwargs)`` with the reader's chunks set to ``chunk`` bytes."""
    old = J._CHUNK_BYTES
    J._CHUNK_BYTES = chunk
    try:
        return read(path, **kwargs)
    finally:
        J._CHUNK_BYTES = old


@settings(max_examples=60, deadline=None)
@given(judgment_files(), st.sampled_from([64, 1 << 22]), st.sampled_from([1, 2]))
def test_fast_reader_equals_json_loads_line_by_line(lines, chunk, workers):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "j.jsonl")
        write_lines(path, lines)
        fast = read_in_chunks(read_judgments, path, chunk, workers=workers)
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


def outcome(path, **kw):
    try:
        return read_judgments(path, **kw)
    except JudgmentError as e:
        return str(e)


@settings(max_examples=60, deadline=None)
@given(batched_files(), st.sampled_from([2048, 1 << 22]), st.sampled_from([1, 2]))
def test_fast_reader_with_shared_prefixes_equals_json_loads(lines, chunk, workers):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "j.jsonl")
        write_lines(path, lines)
        fast = read_in_chunks(outcome, path, chunk, workers=workers)
        careful = outcome(path, fast=False)
        if isinstance(careful, str):
            assert fast == careful
        else:
            assert_same(fast, careful)


def test_shared_prefix_reads_each_run_once(tmp_path):
    """A sweep-like file is read through the shared-prefix path, and a bad run head is named."""
    path = tmp_path / "j.jsonl"
    head = '{"schema":1,"variant":"h8","seed":%s,"epoch":3,"episode":%d,"goal_id":%d,"reward":%s,"regret":1}'
    lines = [head % ("0", i, i % 4, f"{i / 8:.3f}") for i in range(64)]
    write_lines(path, lines)
    calls = []
    real = P._shared_prefix

    def spy(*a):
        k, same = real(*a)
        calls.append((k, None if same is None else int((~same).sum())))
        return k, same

    P._shared_prefix = spy
    try:
        j = read_judgments(path)
    finally:
        P._shared_prefix = real
    assert calls == [(4, 1)]  # schema, variant, seed and epoch shared; one run
    assert j.seed.tolist() == [0] * 64 and j.epoch.tolist() == [3] * 64
    assert j.episode.tolist() == list(range(64)) and j.reward[9] == 1.125
    # the same file with every seed negative: the run head's line is the one named
    write_lines(path, [line.replace('"seed":0', '"seed":-1') for line in lines])
    with pytest.raises(JudgmentError, match=rf"^{path}:1: seed must be a non-negative integer"):
        read_judgments(path)


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


def test_fast_path_memory_stays_near_the_file_size(tmp_path):
    """A long fixed segment in the first lines and many short lines with as many quotes: the
    checks read only bytes the lines hold (gathering the segment for every line took 380 MB)."""
    import tracemalloc

    path = tmp_path / "j.jsonl"
    key = "K" * 40_000
    lines = [f'{{"{key}": 1, "goal_id": 0, "reward": {r}, "optimal_reward": 1}}' for r in (0.5, 0.25)]
    lines += [f'{{"k": 1, "goal_id": {i}, "reward": 0.5, "optimal_reward": 1}}' for i in range(5000)]
    write_lines(path, lines)
    tracemalloc.start()
    try:
        j = read_judgments(path, workers=1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 80 * 2**20, peak  # the file is 0.4 MB
    assert_same(j, read_judgments(path, fast=False))
