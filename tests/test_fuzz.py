"""Fuzzing the inputs other systems and people hand us: judgments logs, configs, the infer CLI.

Whatever the input, the result is either valid or one clear line naming the problem (the file
and line, the config key, the argument); never an unhandled exception or a traceback.
"""

import dataclasses
import io
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from augnes_jax import infer
from augnes_jax.config import Config, ConfigError, load_config
from augnes_jax.judgments import (
    JudgmentError,
    Judgments,
    check_record,
    iter_judgments,
    read_judgments,
)
from tests.toy_checkpoint import write_toy_checkpoint

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# ----------------------------------------------------------------------------- judgments reader

_numbers = st.one_of(st.integers(-(2**65), 2**65), st.floats(allow_nan=False, allow_infinity=False),
                     st.sampled_from([0, 1, -1, 2**63 - 1, 2**63, 1e308, 5e-324]))
_json_scalar = st.one_of(st.none(), st.booleans(), _numbers, st.text(max_size=6))
_json_value = st.recursive(_json_scalar, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
                           max_leaves=6)


@st.composite
def _record(draw, broken: bool = True):
    """A judgment-like record: valid, or (``broken``) sometimes with one field wrong or missing."""
    reward = draw(st.floats(-1e6, 1e6, allow_nan=False))
    optimal = draw(st.floats(-1e6, 1e6, allow_nan=False))
    rec = {"goal_id": draw(st.integers(0, 50)), "reward": reward}
    form = draw(st.sampled_from(["optimal", "regret", "both"] + (["contradiction"] if broken else [])))
    if form in ("optimal", "both", "contradiction"):
        rec["optimal_reward"] = optimal
    if form in ("regret", "both"):
        rec["regret"] = optimal - reward
    if form == "contradiction":
        rec["regret"] = optimal - reward + draw(st.sampled_from([1.0, -3.5, 1e3]))
    for key in draw(st.lists(st.sampled_from(["epoch", "episode", "seed", "variant", "strategy", "baseline_reward",
                                              "advantage", "hidden_dim", "note"]), unique=True, max_size=4)):
        rec[key] = draw(st.integers(0, 9)) if key in ("epoch", "episode", "seed", "hidden_dim") else (
            draw(st.text(max_size=5)) if key in ("variant", "strategy", "note") else draw(st.floats(-9, 9)))
    if broken and draw(st.integers(0, 4)) == 0:  # one field broken
        key = draw(st.sampled_from(sorted(rec) + ["goal_id"]))
        if draw(st.booleans()):
            rec.pop(key, None)
        else:
            rec[key] = draw(_json_value)
    return rec


_garbage = st.one_of(
    st.text(alphabet='{}[]":,0123456789.eE+-truefalsn \\x', max_size=20),
    st.sampled_from(['{"goal_id": 0, "rew', "{", "}", "[]", '""', "null", "NaN", '{"goal_id": NaN}',
                     '{"goal_id": 1, "reward": Infinity, "regret": 0}', "\ufeff{}"]),
)


@st.composite
def _line(draw, good: bool = False):
    """One line: a valid judgment or a blank line (``good``), else anything a log may hold."""
    kind = draw(st.sampled_from(["record", "record", "blank"] if good else
                                ["record", "record", "record", "json", "garbage", "blank", "cut"]))
    if kind == "record":
        text = json.dumps(draw(_record(broken=not good)), allow_nan=True)
    elif kind == "json":
        text = json.dumps(draw(_json_value), allow_nan=True)
    elif kind == "garbage":
        text = draw(_garbage)
    elif kind == "blank":
        text = draw(st.sampled_from(["", " ", "\t", "\r"]))
    else:
        full = json.dumps(draw(_record()))
        text = full[: draw(st.integers(0, len(full)))]
    if draw(st.integers(0, 5)) == 0:
        text += "\r"
    return text.encode("utf-8")


def _expected(lines: list[bytes], trailing_newline: bool):
    """Returns the judgments count, or the 1-based number of the first bad line (negative).

    The reference reading of DESIGN.md: blank lines are skipped, a last line without its newline
    that is not JSON is a torn write (skipped), any other line must be a valid judgment.
    """
    count = 0
    for number, raw in enumerate(lines, 1):
        last_unterminated = number == len(lines) and not trailing_newline
        if not raw.strip():
            continue
        try:
            # the unterminated last line is JSON by json.loads' own reading of bytes (a BOM too)
            rec = json.loads(raw if last_unterminated else raw.decode("utf-8"))
        except ValueError:
            if last_unterminated:
                continue
            return -number
        try:
            check_record(rec)
        except ValueError:
            return -number
        count += 1
    return count if count else 0


@FUZZ
@given(st.one_of(st.lists(_line(good=True), max_size=12).flatmap(  # a valid log, maybe torn at its end
                     lambda ls: st.sampled_from([ls, ls + [b'{"goal_id": 3, "rew']])),
                 st.lists(_line(), max_size=12)),
       st.booleans(), st.booleans(), st.sampled_from([None, 1, 16]))
def test_judgments_reader_is_valid_or_names_the_bad_line(lines, trailing_newline, fast, batch):
    data = b"\n".join(lines) + (b"\n" if trailing_newline and lines else b"")
    expected = _expected(lines, trailing_newline)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "j.jsonl")
        Path(path).write_bytes(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                if batch is None:
                    j = read_judgments(path, fast=fast)
                else:  # in batches of a few bytes: lines are numbered across them
                    j = Judgments.concat(list(iter_judgments(path, batch_bytes=batch, fast=fast)))
            except JudgmentError as e:
                msg = str(e)
                assert "\n" not in msg and msg.startswith(path + ":"), msg
                if expected < 0:
                    assert msg.startswith(f"{path}:{-expected}: "), (msg, expected)
                else:
                    assert expected == 0 and msg == f"{path}: no judgments", (msg, expected)
                return
    assert expected == len(j) > 0  # every valid line kept, none invented
    assert np.all(np.isfinite(j.reward)) and np.all(np.isfinite(j.regret))


# ----------------------------------------------------------------------------- config loader


def _schema_keys(cls=Config, prefix="") -> list[str]:
    keys = []
    for f in dataclasses.fields(cls):
        sub = f.default_factory if f.default_factory is not dataclasses.MISSING else None
        if sub is not None and dataclasses.is_dataclass(sub):
            keys += _schema_keys(sub, f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


KEYS = _schema_keys()
_ident = st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True)
_scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(), st.text(max_size=8))
# values as a user types them after "key=": YAML scalars and lists, mappings, and anything at all
_value_text = st.one_of(
    _scalar.map(lambda v: yaml.safe_dump(v, default_flow_style=True).removesuffix("\n...\n").strip()),
    st.lists(_scalar, max_size=3).map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip()),
    st.sampled_from(["", "null", "[]", "[1,2]", "[0,0]", "${seed}", "${nope}", "auto", "cem", "-1", "1e400", "nan",
                     "[1, 'x']", "http://h", "file:///etc/passwd", "../x", "a/b", "0x10", "1_000", "~", "{a: 1}",
                     "[0, {a: 1}]", '"9]9,', "e$}", "${"]),
    st.text(alphabet="abc019.-+eE_[]{}, '\"${}:/\n", max_size=12),
    st.text(max_size=8),
)
_override = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), _value_text),
    st.builds(lambda k, v: f"{k}={v}", st.lists(_ident, min_size=1, max_size=3).map(".".join), _value_text),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS).map(lambda k: k.rsplit(".", 1)[0]), _value_text),
    st.builds(lambda k, v: f"{k}={v}", st.text(max_size=8), _value_text),  # any key at all
    st.text(max_size=10),
)


def _assert_config_outcome(fn) -> None:
    try:
        cfg = fn()
    except ConfigError as e:
        msg = str(e)
        assert "\n" not in msg and msg.startswith("config error: ") and len(msg) > len("config error: "), msg
        return
    assert isinstance(cfg, Config)


@FUZZ
@given(st.lists(_override, max_size=4))
def test_config_overrides_are_valid_or_one_line_errors(overrides):
    _assert_config_outcome(lambda: load_config(None, overrides))


_leaf = _json_value


@FUZZ
@given(st.one_of(
    st.dictionaries(st.sampled_from(sorted({k.split(".")[0] for k in KEYS}) + ["bogus"]),
                    _leaf | st.dictionaries(st.sampled_from(sorted({k.split(".")[-1] for k in KEYS})), _leaf,
                                            max_size=3), max_size=4).map(yaml.safe_dump),
    st.text(alphabet="abc:-[]{}\n #'\"0.1&*!|>%@`\t", max_size=40),
))
def test_config_files_are_valid_or_one_line_errors(text):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.yaml"
        path.write_text(text)
        _assert_config_outcome(lambda: load_config(path))


# Inputs the fuzzing above once found escaping as other exceptions or as several lines
# (OmegaConf's YAML parsing of override values, its dotted-key parser, a mapping merged into a
# list field, a newline inside an override): kept as regression cases.
@pytest.mark.parametrize("overrides", [['k="9]9,'], ["[="], ["variants.hidden_dims={a: 1}"],
                                       ["env.goals=[0,{a: 1}]"], ["a\nb=1"]])
def test_config_loader_gaps_found_by_fuzzing(overrides):
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert "\n" not in str(err.value)


def test_a_config_error_names_its_key():
    """The fuzzed errors above are one line; where OmegaConf knows the key, the line names it."""
    for override, key in [("epochs=abc", "epochs"), ("env.nosuch=2", "env.nosuch"),
                          ("planner.method=x", "planner.method"), ("variants.hidden_dims=5", "variants.hidden_dims"),
                          ("alerts.webhook_url=file:///etc/passwd", "alerts.webhook_url")]:
        with pytest.raises(ConfigError, match=rf"^config error: {key}: "):
            load_config(None, [override])


# ----------------------------------------------------------------------------- infer CLI


@pytest.fixture(scope="module")
def model_run(tmp_path_factory):
    """A run directory with one checkpoint: bucket w4 holding h2 and h4 (obs_dim 3, act_dim 2)."""
    return write_toy_checkpoint(tmp_path_factory.mktemp("fuzz_run"), seed=1)


_finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
_odd_vec = st.one_of(
    st.lists(_finite, min_size=1, max_size=4).map(lambda v: ",".join(map(repr, v))),
    st.text(alphabet="0123456789.,-+eE naif", max_size=12),
    st.sampled_from(["", ",", "1,,2", "nan,0,0", "inf,1,2", "1e999,0,0", "0x1,0,0", "1,2", "1,2,3", "1,2,3,4"]),
)


def _npy(a) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


_odd_body = st.one_of(
    st.binary(max_size=40),
    st.text(alphabet="0123456789.,-e \n", max_size=40).map(str.encode),
    st.sampled_from([b"1,2,3\n4,5,6\n", b"1,2\n", b"\x93NUMPY", b"nan,1,2\n",
                     _npy(np.zeros((2, 3), np.int64)), _npy(np.zeros((1, 1, 3))), _npy(np.array(["a"])), b""]),
)


@st.composite
def _infer_case(draw):
    """Returns ``(args, files)``: well-formed arguments half of the time, anything otherwise."""
    args = ["--variant", draw(st.sampled_from(["best", "best", "h2-b8-s0", "h4-b8-s0", "nope", "", "../x"]))]
    step = draw(st.sampled_from([None, None, "0", "1", "-1", "x"]))
    args += [] if step is None else ["--step", step]
    good = draw(st.booleans())
    if not draw(st.booleans()):
        vec = (lambda n: st.lists(_finite, min_size=n, max_size=n).map(lambda v: ",".join(map(repr, v)))) \
            if good else (lambda n: _odd_vec)
        return args + [f"--obs={draw(vec(3))}", f"--action={draw(vec(2))}"], {}
    suffix = draw(st.sampled_from([".csv", ".npy"] if good else [".csv", ".npy", ".txt"]))
    rows = draw(st.integers(1, 3))

    def body(n):
        if not good:
            return draw(_odd_body)
        a = np.asarray(draw(st.lists(st.lists(_finite, min_size=n, max_size=n), min_size=rows, max_size=rows)))
        return _npy(a) if suffix == ".npy" else "".join(",".join(map(repr, r)) + "\n" for r in a.tolist()).encode()

    files = {f"o{suffix}": body(3), f"a{suffix}": body(2)}
    return args + ["--obs-file", f"o{suffix}", "--action-file", f"a{suffix}"], files


@pytest.mark.filterwarnings("ignore:loadtxt")  # numpy's note on an empty .csv, which infer then refuses
@FUZZ
@given(_infer_case())
def test_infer_cli_is_valid_or_one_line_error(model_run, tmp_path, capsys, case):
    args, files = case
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    args = [str(tmp_path / a) if a in files else a for a in args]
    try:
        code = infer.main([str(model_run), *args])
    except SystemExit as e:  # argparse's own usage errors: status 2 and one line
        code = e.code
    out, err = capsys.readouterr()
    assert code in (0, 2), (code, err)
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "error" in lines[0], err
        return
    doc = json.loads(out)
    delta = np.asarray(doc["delta"], np.float64)
    obs = args[args.index("--obs-file") + 1] if files else None
    x = (infer.read_matrix(obs, "--obs-file") if files
         else infer.parse_vector(next(a for a in args if a.startswith("--obs="))[6:], "--obs")).astype(np.float64)
    assert delta.shape == x.shape and x.shape[-1] == 3 and np.all(np.isfinite(delta))
    np.testing.assert_allclose(np.asarray(doc["next_obs"]), x + delta, rtol=1e-12)
    assert doc["variant"] in ("h2-b8-s0", "h4-b8-s0") and doc["step"] == 0


def test_infer_empty_npy_file_is_one_line_error(model_run, tmp_path, capsys):
    for name in ("o.npy", "a.npy"):
        (tmp_path / name).write_bytes(b"")
    code = infer.main([str(model_run), "--obs-file", str(tmp_path / "o.npy"), "--action-file", str(tmp_path / "a.npy")])
    assert code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
