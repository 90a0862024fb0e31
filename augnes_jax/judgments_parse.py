"""Parsing chunks of ``judgments.jsonl`` into columns: the vectorised fast path and its fallback.

:func:`parse_chunk` takes whole lines of a buffer and returns :class:`Part` s, columns of the rows
it parsed. Lines that share a layout (the same keys, in the same order, with the same
separators: every line one writer wrote) are checked byte for byte and their numbers are parsed
in NumPy, exactly (the decimal-to-binary conversion is correctly rounded, so values equal those
of :func:`json.loads`). Runs of lines that repeat the leading fields of the line before them (a
batch of one run, variant and epoch) have those fields read once. Any line the fast path cannot
vouch for goes through :func:`json.loads` and :func:`~augnes_jax.judgments.check_record`, which
raise :class:`LineError` naming the line. Used by :func:`augnes_jax.judgments.read_judgments`.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import threading

import numpy as np

from augnes_jax.judgments import (
    _INT64_MAX,
    _KNOWN,
    _NO_EXTRA,
    FLOAT_FIELDS,
    INT_FIELDS,
    STR_FIELDS,
    check_record,
    regret_tolerance,
)

PAD = 64  # zero bytes the caller puts after the data, so 8-byte reads near its end stay inside
_MAX_TEMPLATES = 4  # line layouts tried per chunk before the rest goes line by line
_MAX_NUM_LEN = 24
_MAX_STR_LEN = 256

_START_RE = re.compile(rb" *\{ *")
_COLON_RE = re.compile(rb" *: *")
_SEP_RE = re.compile(rb" *, *")
_END_RE = re.compile(rb" *\} *$")
_SCALAR_RE = re.compile(rb"[^ ,}\]\[{\"]+")
_LITERALS = {b"true": True, b"false": False, b"null": None}

# A DFA over the bytes of a JSON number padded with zero bytes, as lookup tables indexed by
# ``state * 256 + byte``: the next state, and what the transition adds to the mantissa, the
# count of fraction digits, and the exponent.
_S_START, _S_MINUS, _S_ZERO, _S_INT, _S_FRAC, _S_DOT = 0, 1, 2, 3, 4, 5
_S_E, _S_EPLUS, _S_EMINUS, _S_EXP, _S_END, _S_ERR = 6, 7, 8, 9, 10, 11


def _number_tables() -> dict[str, np.ndarray]:
    nxt = np.full((12, 256), _S_ERR, np.int32)
    digits = np.arange(ord("0"), ord("9") + 1)
    e_chars = [ord("e"), ord("E")]
    nxt[_S_START, ord("-")] = _S_MINUS
    for s in (_S_START, _S_MINUS):
        nxt[s, ord("0")] = _S_ZERO
        nxt[s, digits[1:]] = _S_INT
    for s in (_S_ZERO, _S_INT):
        nxt[s, ord(".")] = _S_DOT
    nxt[_S_INT, digits] = _S_INT
    nxt[_S_DOT, digits] = _S_FRAC
    nxt[_S_FRAC, digits] = _S_FRAC
    for s in (_S_ZERO, _S_INT, _S_FRAC):
        nxt[s, e_chars] = _S_E
    nxt[_S_E, ord("+")] = _S_EPLUS
    nxt[_S_E, ord("-")] = _S_EMINUS
    for s in (_S_E, _S_EPLUS, _S_EMINUS, _S_EXP):
        nxt[s, digits] = _S_EXP
    for s in (_S_ZERO, _S_INT, _S_FRAC, _S_EXP, _S_END):
        nxt[s, 0] = _S_END
    byte = np.arange(256)[None, :]
    is_digit = (byte >= ord("0")) & (byte <= ord("9"))
    mant_digit = is_digit & np.isin(nxt, [_S_ZERO, _S_INT, _S_FRAC])
    exp_digit = is_digit & (nxt == _S_EXP)
    return {
        "next": (nxt * 256).reshape(-1),  # premultiplied, so the next index is state + byte
        "mul": np.where(mant_digit, 10, 1).astype(np.int64).reshape(-1),
        "add": np.where(mant_digit, byte - ord("0"), 0).astype(np.int64).reshape(-1),
        "frac": (mant_digit & (nxt == _S_FRAC)).astype(np.int32).reshape(-1),
        "emul": np.where(exp_digit, 10, 1).astype(np.int32).reshape(-1),
        "eadd": np.where(exp_digit, byte - ord("0"), 0).astype(np.int32).reshape(-1),
        "edig": exp_digit.astype(np.int32).reshape(-1),
        "eneg": (nxt == _S_EMINUS).reshape(-1),
        "flt": np.isin(nxt, [_S_DOT, _S_E]).reshape(-1),
    }


_NUM = _number_tables()
_ACCEPT = np.zeros(12, bool)
_ACCEPT[[_S_ZERO, _S_INT, _S_FRAC, _S_EXP, _S_END]] = True
_POW10 = 10.0 ** np.arange(23)  # every entry exact in float64
_BYTE_MASKS = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [2**64 - 1], np.uint64)


@dataclasses.dataclass
class _Template:
    """The layout of one line: fixed byte segments around variable fields.

    A line is ``segments[0] field[0] segments[1] ... field[k-1] segments[k]``. A field is the
    text of a number or the inside of a string value. Each segment is located on a line by
    ``anchors``: the line start, a quote it contains (``(index of that quote in the line,
    offset in the segment)``), or the line end.
    """

    segments: list
    anchors: list
    fields: list  # per field: (key, "num" | "str")
    literals: dict  # key -> True / False / None, written inside a segment
    keys: list
    num_quotes: int


def _template(line: bytes) -> _Template | None:
    """Returns the layout of a flat JSON object line, or None if the fast path cannot use it."""
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict) or not obj:
        return None
    m = _START_RE.match(line)
    if m is None:
        return None
    cur, pos = bytearray(m.group()), m.end()
    segments: list = []
    fields: list = []
    literals: dict = {}
    keys: list = []
    while True:
        if line[pos : pos + 1] != b'"':
            return None
        end = line.find(b'"', pos + 1)
        key = line[pos + 1 : end].decode("utf-8", errors="strict")
        keys.append(key)
        cur += line[pos : end + 1]
        m = _COLON_RE.match(line, end + 1)
        if m is None:
            return None
        cur += m.group()
        pos = m.end()
        first = line[pos : pos + 1]
        if first == b'"':
            end = line.find(b'"', pos + 1)
            segments.append(bytes(cur + b'"'))
            fields.append((key, "str"))
            cur = bytearray(b'"')
            pos = end + 1
        elif first in (b"[", b"{") or not first:
            return None
        else:
            m = _SCALAR_RE.match(line, pos)
            if m is None:
                return None
            tok, pos = m.group(), m.end()
            if tok in _LITERALS:
                literals[key] = _LITERALS[tok]
                cur += tok
            else:
                segments.append(bytes(cur))
                fields.append((key, "num"))
                cur = bytearray()
        m = _SEP_RE.match(line, pos)
        last = m is None
        if last:
            m = _END_RE.match(line, pos)
            if m is None:
                return None
        cur += m.group()
        pos = m.end()
        if last:
            break
    segments.append(bytes(cur))
    if len(keys) != len(obj) or pos != len(line):
        return None
    anchors: list = []
    quote = 0
    for i, seg in enumerate(segments):
        off = seg.find(b'"')
        if i == 0:
            anchors.append(("start", 0, 0))
        elif off >= 0:
            anchors.append(("quote", quote, off))
        elif i == len(segments) - 1:
            anchors.append(("end", 0, 0))
        else:
            return None
        quote += seg.count(b'"')
    return _Template(segments, anchors, fields, literals, keys, quote)


def _match(
    buf: memoryview, pos: np.ndarray, pattern: bytes, ls: np.ndarray, le: np.ndarray
) -> np.ndarray:
    """Returns, per line, whether the bytes at ``pos`` equal ``pattern`` inside ``[ls, le)``.

    Only lines the pattern fits in are read, so the bytes gathered never exceed the lines'
    own (a long segment against many short lines would otherwise cost lines x segment).
    """
    width = len(pattern)
    view = np.ndarray((len(buf) - width + 1,), f"S{width}", buffer=buf, strides=(1,))
    fits = (pos >= ls) & (pos + width <= le)
    if fits.all():
        return view[pos] == pattern
    out = np.zeros(pos.shape, bool)
    idx = np.flatnonzero(fits)
    out[idx] = view[pos[idx]] == pattern
    return out


def _gather(words: np.ndarray, start: np.ndarray, length: np.ndarray, width: int) -> np.ndarray:
    """Returns the bytes ``[start, start + length)`` of each row, zero padded, as ``[n, 8k]``."""
    nw = -(-width // 8)
    out = np.empty((start.shape[0], nw), np.uint64)
    last = words.shape[0] - 1
    keep = np.empty(start.shape, np.intp)
    for j in range(nw):
        np.subtract(length, 8 * j, out=keep)
        np.maximum(keep, 0, out=keep)
        np.minimum(keep, 8, out=keep)
        out[:, j] = words[np.minimum(start + 8 * j, last)] & _BYTE_MASKS[keep]
    return out.view(np.uint8).reshape(start.shape[0], 8 * nw)


_pair_lock = threading.Lock()
_pair_tables: dict[str, np.ndarray] = {}


def _number_pair_tables() -> dict[str, np.ndarray]:
    """Returns the DFA tables composed over two bytes, indexed by ``state * 65536 + b0 + 256 * b1``.

    Stepping two bytes at a time halves the NumPy passes over a batch of numbers. Built on
    first use (about 20 MB).
    """
    with _pair_lock:
        if _pair_tables:
            return _pair_tables
        one = {k: v.reshape(12, 256) for k, v in _NUM.items()}
        nxt1 = one["next"] // 256  # [12, 256] plain state numbers
        s = np.arange(12)[:, None, None]
        b0 = np.arange(256)[None, None, :]  # low byte: the first character
        b1 = np.arange(256)[None, :, None]  # high byte: the second
        mid = nxt1[s, b0]
        t = {k: v for k, v in one.items()}
        pair = {
            "next": (t["next"][mid, b1] // 256 * 65536).astype(np.int32),
            "mul": t["mul"][s, b0] * t["mul"][mid, b1],
            "add": t["add"][s, b0] * t["mul"][mid, b1] + t["add"][mid, b1],
            "frac": (t["frac"][s, b0] + t["frac"][mid, b1]).astype(np.int32),
            "emul": (t["emul"][s, b0] * t["emul"][mid, b1]).astype(np.int32),
            "eadd": (t["eadd"][s, b0] * t["emul"][mid, b1] + t["eadd"][mid, b1]).astype(np.int32),
            "edig": (t["edig"][s, b0] + t["edig"][mid, b1]).astype(np.int32),
            "eneg": t["eneg"][s, b0] | t["eneg"][mid, b1],
            "flt": t["flt"][s, b0] | t["flt"][mid, b1],
        }
        _pair_tables.update({k: np.ascontiguousarray(v).reshape(-1) for k, v in pair.items()})
        return _pair_tables


def _run_dfa(pairs: np.ndarray, has_dot: bool, has_e: bool):
    """Returns the DFA's final carry over ``pairs [w/2, n]`` (two bytes per uint16)."""
    tab = _number_pair_tables()
    n = pairs.shape[1]
    state = np.zeros(n, np.int32)
    idx = np.empty(n, np.int32)
    mant = np.zeros(n, np.int64)
    tmp = np.empty(n, np.int64)
    frac = np.zeros(n, np.int32)
    expo = np.zeros(n, np.int32)
    edig = np.zeros(n, np.int32)
    itmp = np.empty(n, np.int32)
    eneg = np.zeros(n, bool)
    is_float = np.zeros(n, bool)
    for j in range(pairs.shape[0]):
        np.add(state, pairs[j], out=idx)
        np.take(tab["mul"], idx, out=tmp)
        mant *= tmp
        np.take(tab["add"], idx, out=tmp)
        mant += tmp
        if has_dot or has_e:
            is_float |= np.take(tab["flt"], idx)
        if has_dot:
            np.take(tab["frac"], idx, out=itmp)
            frac += itmp
        if has_e:
            small = edig < 6  # later exponent digits only matter for the slow path
            np.take(tab["emul"], idx, out=itmp)
            np.multiply(expo, itmp, out=expo, where=small)
            np.take(tab["eadd"], idx, out=itmp)
            np.add(expo, itmp, out=expo, where=small)
            np.take(tab["edig"], idx, out=itmp)
            edig += itmp
            eneg |= np.take(tab["eneg"], idx)
        np.take(tab["next"], idx, out=state)
    return state // 65536, mant, frac, expo, edig, eneg, is_float


def _parse_numbers(buf, words: np.ndarray, start: np.ndarray, length: np.ndarray):
    """Returns ``(values float64, ints int64, is_int bool, ok bool)`` for number tokens.

    ``ok`` is False where a token is not a JSON number. Values are correctly rounded, as
    float() would give: a token whose digits fit in 2**53 and whose decimal exponent is within
    22 converts exactly in one IEEE operation (Clinger's fast path); the rare others go
    through float().
    """
    n = start.shape[0]
    ok = (length >= 1) & (length <= _MAX_NUM_LEN)
    length = np.where(ok, length, 0)
    width = int(length.max()) if n else 0
    if width == 0:
        return np.zeros(n), np.zeros(n, np.int64), np.ones(n, bool), ok
    mat = _gather(words, start, length, width)  # [n, 8k] bytes, zero padded
    has_dot = bool((mat == ord(".")).any())
    has_e = bool(((mat == ord("e")) | (mat == ord("E"))).any())
    # One more zero byte than the longest token, so every token ends on a padding transition.
    half = (width + 2) // 2
    if 2 * half > mat.shape[1]:
        mat = np.concatenate([mat, np.zeros((n, 8), np.uint8)], axis=1)
    pairs = np.ascontiguousarray(mat.view(np.uint16)[:, :half].T)  # [w/2, n]
    state, mant, frac, expo, edig, eneg, is_float = _run_dfa(pairs, has_dot, has_e)
    ok &= _ACCEPT[state]
    neg = mat[:, 0] == ord("-")
    ints = np.where(neg, -mant, mant)
    exact = (length <= 18) & (mant <= 2**53)
    if has_dot or has_e:
        e10 = np.where(eneg, -expo, expo) - frac
        mag = np.abs(e10)
        exact &= (mag <= 22) & (edig <= 4)
        scale = _POW10[np.minimum(mag, 22)]
        m = mant.astype(np.float64)
        values = np.where(e10 >= 0, m * scale, m / scale)
        np.negative(values, out=values, where=neg)
    else:
        values = ints.astype(np.float64)
    for i in np.flatnonzero(ok & ~exact).tolist():
        tok = bytes(buf[start[i] : start[i] + length[i]])
        values[i] = float(tok)
        if not is_float[i]:
            big = int(tok)
            if abs(big) > _INT64_MAX:
                ok[i] = False
            else:
                ints[i] = big
    return values, ints, ~is_float, ok


def _decode_strings(words, start: np.ndarray, length: np.ndarray) -> list | None:
    """Returns the UTF-8 strings at ``[start, start + length)``, or None if one is not UTF-8."""
    n = start.shape[0]
    if n == 0:
        return []
    width = int(length.max())
    if width > _MAX_STR_LEN:
        return None
    if width == 0:
        return [""] * n
    mat = _gather(words, start, length, width)
    arr = mat.view(f"S{mat.shape[1]}").reshape(n)
    change = np.flatnonzero(arr[1:] != arr[:-1]) + 1
    try:
        if change.shape[0] < n // 4:
            # Runs of equal values (a variant, a strategy) are decoded once.
            bounds = [0, *change.tolist(), n]
            return list(
                itertools.chain.from_iterable(
                    itertools.repeat(arr[a].decode("utf-8"), b - a)
                    for a, b in itertools.pairwise(bounds)
                )
            )
        return [s.decode("utf-8") for s in arr.tolist()]
    except UnicodeDecodeError:
        return None


@dataclasses.dataclass
class Part:
    """Parsed rows of one chunk: their line indices within the chunk, and their columns."""

    lines: np.ndarray
    ints: dict
    floats: dict
    strs: dict
    extra: list


def _shared_prefix(buf: memoryview, ls: np.ndarray, f_start: list) -> tuple[int, np.ndarray | None]:
    """Returns ``(k, same)``: lines whose first k fields repeat the line before them.

    Judgments are written in batches that share a run, a variant, an epoch and their
    hyperparameters, so a line often starts with the very bytes of the line before it up to
    some field. ``k`` (from two sampled pairs of neighbouring lines) is the number of leading
    fields in that shared prefix, and ``same[i]`` says whether line i's prefix equals line
    i-1's byte for byte: its fields, and the checks on them, are then line i-1's. ``(0, None)``
    where sharing is too rare to pay for the comparison.
    """
    n = ls.shape[0]
    if n < 8 or not f_start:
        return 0, None
    k = 0
    for i in (0, n // 2):
        a = bytes(buf[ls[i] : ls[i + 1]])
        b = bytes(buf[ls[i + 1] : ls[i + 1] + len(a)])
        common = next(
            (c for c, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
        )
        kk = 0
        while (
            kk < len(f_start)
            and f_start[kk][i] - ls[i] <= common
            and (f_start[kk][i] - ls[i] == f_start[kk][i + 1] - ls[i + 1])
        ):
            kk += 1
        k = max(k, kk - 1)  # field kk-1 starts inside the prefix but may end past it
    if k <= 0:
        return 0, None
    rel = f_start[k] - ls
    width = int(rel[0])
    if width <= 0:
        return 0, None
    # Only lines whose field k starts where line 0's does can share its prefix; reading just
    # those keeps the bytes gathered within the lines' own.
    idx = np.flatnonzero(rel == width)
    view = np.ndarray((len(buf) - width + 1,), f"S{width}", buffer=buf, strides=(1,))
    pref = view[ls[idx]].view(np.uint8).reshape(-1, width)
    same = np.zeros(n, bool)
    same[idx[1:]] = (idx[1:] == idx[:-1] + 1) & ~(pref[1:] != pref[:-1]).any(axis=1)
    if n - np.count_nonzero(same) > n // 4:
        return 0, None
    return k, same


def _expand_list(values: list, counts: np.ndarray) -> list:
    """Returns ``values[i]`` repeated ``counts[i]`` times, in order."""
    return list(
        itertools.chain.from_iterable(
            itertools.repeat(v, c) for v, c in zip(values, counts.tolist(), strict=True)
        )
    )


def _fast_lines(ctx: ChunkScan, rows: np.ndarray, tmpl: _Template) -> Part | None:
    """Returns the rows among ``rows`` that have layout ``tmpl`` and pass every check."""
    words = ctx.words
    cand = rows[ctx.qcount[rows] == tmpl.num_quotes]
    n = cand.shape[0]
    if n == 0:
        return None
    nq = tmpl.num_quotes
    if n == ctx.starts.shape[0] and ctx.q.shape[0] == nq * n:
        qq = ctx.q.reshape(n, nq)  # every line of the chunk has this many quotes
    else:
        qq = ctx.q[ctx.qfirst[cand][:, None] + np.arange(nq)]
    ls, le = ctx.starts[cand], ctx.ends[cand]
    seg_start = []
    for kind, quote, off in tmpl.anchors:
        if kind == "start":
            seg_start.append(ls)
        elif kind == "quote":
            seg_start.append(qq[:, quote] - off)
        else:
            seg_start.append(le - len(tmpl.segments[-1]))
    f_starts = [seg_start[j] + len(tmpl.segments[j]) for j in range(len(tmpl.fields))]
    f_lens = [seg_start[j + 1] - f_starts[j] for j in range(len(tmpl.fields))]

    # Fields 0..k-1 (and the segments around them) are read on the lines that start a run of
    # equal prefixes only, then spread over the run.
    k, same = _shared_prefix(ctx.buf, ls, f_starts)
    if k:
        heads = np.flatnonzero(~same)
        run_of = np.cumsum(~same) - 1
        run_len = np.diff(np.append(heads, n))

    def on(j: int, arr: np.ndarray) -> np.ndarray:
        """Returns field/segment j's per-line array on the lines it is computed on."""
        return arr[heads] if j < k else arr

    ok = seg_start[-1] + len(tmpl.segments[-1]) == le
    ok_head = np.ones(heads.shape[0], bool) if k else None
    for j, (seg, pos) in enumerate(zip(tmpl.segments, seg_start, strict=True)):
        if j <= k and k:
            ok_head &= _match(ctx.buf, pos[heads], seg, ls[heads], le[heads])
        else:
            ok &= _match(ctx.buf, pos, seg, ls, le)

    def check(j: int, cond: np.ndarray) -> None:
        nonlocal ok
        if j < k:
            ok_head[...] &= cond
        else:
            ok &= cond

    def spread(j: int, arr):
        if j >= k:
            return arr
        return _expand_list(arr, run_len) if isinstance(arr, list) else arr[run_of]

    ints: dict = {}
    floats: dict = {}
    strs: dict = {}
    extra_cols: dict = {}
    num_fields = []
    for j, (key, kind) in enumerate(tmpl.fields):
        f_start, f_len = on(j, f_starts[j]), on(j, f_lens[j])
        if kind == "num":
            if key in STR_FIELDS:
                return None  # a number where a string belongs: the careful path names the line
            num_fields.append((j, key, f_start, f_len))
        else:
            if key in INT_FIELDS or key in FLOAT_FIELDS:
                return None
            check(j, f_len >= 0)
            vals = _decode_strings(words, f_start, np.maximum(f_len, 0))
            if vals is None:
                return None
            if key in STR_FIELDS:
                strs[key] = spread(j, vals)
            else:
                extra_cols[key] = spread(j, vals)
    for key, val in tmpl.literals.items():
        if key in _KNOWN and val is not None:
            return None
        if key not in _KNOWN:
            extra_cols[key] = val
    # Fields of similar width are parsed in one batch: long vectors, little padding.
    widths = [min(int(f_len.max()), _MAX_NUM_LEN + 1) // 2 for _, _, _, f_len in num_fields]
    for w in sorted(set(widths)):
        group = [num_fields[i] for i, wi in enumerate(widths) if wi == w]
        values, ivals, is_int, nok = _parse_numbers(
            ctx.buf,
            words,
            np.concatenate([f[2] for f in group]),
            np.concatenate([f[3] for f in group]),
        )
        lo = 0
        for j, key, f_start, _ in group:
            sl = slice(lo, lo + f_start.shape[0])
            lo = sl.stop
            check(j, nok[sl])
            if key in INT_FIELDS:
                check(j, is_int[sl] & (ivals[sl] >= 0))
                ints[key] = spread(j, ivals[sl])
            elif key in FLOAT_FIELDS:
                check(j, np.isfinite(values[sl]))
                floats[key] = spread(j, values[sl])
            else:
                extra_cols[key] = tuple(spread(j, x) for x in (values[sl], ivals[sl], is_int[sl]))
    if k:
        ok &= ok_head[run_of]

    if "goal_id" not in ints or "reward" not in floats:
        return None
    rew = floats["reward"]
    opt = floats.get("optimal_reward")
    reg = floats.get("regret")
    if opt is None and reg is None:
        return None
    if opt is not None:
        implied = opt - rew
        if reg is None:
            floats["regret"] = implied
        else:
            ok &= np.abs(reg - implied) <= regret_tolerance(opt, rew)
    if "advantage" not in floats and "baseline_reward" in floats:
        floats["advantage"] = rew - floats["baseline_reward"]

    if not ok.all():
        keep = np.flatnonzero(ok)
        if keep.shape[0] == 0:
            return None
        idx = keep.tolist()
        cand = cand[keep]
        ints = {k: v[keep] for k, v in ints.items()}
        floats = {k: v[keep] for k, v in floats.items()}
        strs = {k: [v[i] for i in idx] for k, v in strs.items()}
        for k, v in list(extra_cols.items()):
            if isinstance(v, tuple):
                extra_cols[k] = tuple(a[keep] for a in v)
            elif isinstance(v, list):
                extra_cols[k] = [v[i] for i in idx]
        n = cand.shape[0]
    extra = _extra_rows(extra_cols, tmpl.keys, n)
    return Part(lines=cand, ints=ints, floats=floats, strs=strs, extra=extra)


def _extra_rows(extra_cols: dict, order: list, n: int) -> list:
    """Returns one mapping of extra fields per row, keys in line order."""
    if not extra_cols:
        return [_NO_EXTRA] * n
    names = [k for k in order if k in extra_cols]
    columns = []
    for k in names:
        v = extra_cols[k]
        if isinstance(v, tuple):
            values, ivals, is_int = v
            col = values.tolist()
            for i in np.flatnonzero(is_int).tolist():
                col[i] = int(ivals[i])
            columns.append(col)
        elif isinstance(v, list):
            columns.append(v)
        else:
            columns.append([v] * n)
    return [dict(zip(names, vals, strict=True)) for vals in zip(*columns, strict=True)]


# --------------------------------------------------------------------------------------------
# Chunks, and the careful path
# --------------------------------------------------------------------------------------------


class LineError(Exception):
    """A bad line, numbered within its chunk; read_judgments turns it into JudgmentError."""

    def __init__(self, line: int, problem: str):
        super().__init__(problem)
        self.line = line
        self.problem = problem


@dataclasses.dataclass
class ChunkScan:
    """Positions found in one chunk (offsets from the chunk's first byte)."""

    buf: memoryview  # the buffer from the chunk's first byte on
    words: np.ndarray  # 8-byte little-endian words starting at every byte of ``buf``
    starts: np.ndarray  # first byte of each line
    ends: np.ndarray  # its newline
    q: np.ndarray = None  # every quote
    qfirst: np.ndarray = None  # index in q of each line's first quote
    qcount: np.ndarray = None  # quotes per line


def _careful_lines(ctx: ChunkScan, rows: np.ndarray) -> Part:
    """Returns the rows parsed with json.loads; raises LineError naming a bad line."""
    int_cols: list = [[] for _ in INT_FIELDS]
    float_cols: list = [[] for _ in FLOAT_FIELDS]
    str_cols: list = [[] for _ in STR_FIELDS]
    extra: list = []
    kept = []
    ni, nf = len(INT_FIELDS), len(FLOAT_FIELDS)
    buf = ctx.buf
    for r in rows.tolist():
        line = bytes(buf[ctx.starts[r] : ctx.ends[r]])
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except UnicodeDecodeError:
            raise LineError(r, "not valid UTF-8") from None
        except json.JSONDecodeError as e:
            raise LineError(r, f"invalid JSON: {e.msg} (column {e.colno})") from None
        try:
            row, ext = check_record(rec)
        except ValueError as e:
            raise LineError(r, str(e)) from None
        for j in range(ni):
            int_cols[j].append(row[j])
        for j in range(nf):
            float_cols[j].append(row[ni + j])
        for j in range(len(STR_FIELDS)):
            str_cols[j].append(row[ni + nf + j])
        extra.append(ext or _NO_EXTRA)
        kept.append(r)
    return Part(
        lines=np.asarray(kept, np.int64),
        ints={k: np.asarray(c, np.int64) for k, c in zip(INT_FIELDS, int_cols, strict=True)},
        floats={
            k: np.asarray(c, np.float64) for k, c in zip(FLOAT_FIELDS, float_cols, strict=True)
        },
        strs=dict(zip(STR_FIELDS, str_cols, strict=True)),
        extra=extra,
    )


def parse_chunk(
    buf: bytearray, data: np.ndarray, words: np.ndarray, lo: int, hi: int, fast: bool
) -> tuple[list[Part], int]:
    """Returns the parsed parts of ``buf[lo:hi]`` (complete lines) and its number of lines."""
    b = data[lo:hi]
    # Positions are relative to the chunk: views of the buffer from ``lo`` on (no copies).
    cbuf = memoryview(buf)[lo:]
    cwords = words[lo:]
    ends = np.flatnonzero(b == 10)
    n_lines = ends.shape[0]
    starts = np.empty_like(ends)
    if n_lines:
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
    ctx = ChunkScan(cbuf, cwords, starts, ends)
    rows = np.arange(n_lines)
    parts: list[Part] = []
    # Backslash escapes and control characters (tabs, CR, ...) are rare enough to leave to
    # json.loads; everything else the fast path checks byte for byte.
    if fast and buf.find(b"\\", lo, hi) < 0 and np.count_nonzero(b < 32) == n_lines:
        ctx.q = np.flatnonzero(b == 34)
        qcum = np.searchsorted(ctx.q, ends)  # quotes before each line's newline
        ctx.qfirst = np.empty_like(qcum)
        if n_lines:
            ctx.qfirst[0] = 0
            ctx.qfirst[1:] = qcum[:-1]
        ctx.qcount = qcum - ctx.qfirst
        for _ in range(_MAX_TEMPLATES):
            if rows.shape[0] == 0:
                break
            r0 = int(rows[0])
            tmpl = _template(bytes(cbuf[starts[r0] : ends[r0]]))
            part = None if tmpl is None else _fast_lines(ctx, rows, tmpl)
            if part is None:
                break
            parts.append(part)
            if part.lines.shape[0] == rows.shape[0]:
                rows = rows[:0]
            else:
                rows = np.setdiff1d(rows, part.lines, assume_unique=True)
            if part.lines[0] != r0:
                break  # the layout's own first line failed a check: json.loads will say why
    if rows.shape[0]:
        parts.append(_careful_lines(ctx, rows))
    return parts, int(n_lines)


