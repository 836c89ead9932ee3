"""Bad input for every public function, and NaN propagation.

Each bad call must raise the documented exception type with a message that names the argument
(as a whole word: 'h0', 'w_hh', 'lengths', ...) and, for a size mismatch, states both the expected
and the actual size. Valid base sizes: B = 3, S = 13, I = 5, H = 7, A = 5, T = 4; every wrong size
below is a number that appears nowhere else in the call, so finding it in the message means the
message reports it.

Where H is inconsistent between h0 and the other arguments, which argument is blamed depends on
which one the implementation reads H from; those cases accept either name.
"""
import re

import numpy as np
import pytest

from s2sext import ops

from reference import attention_params, lstm_weights, normal

B, S, I, H, A, T = 3, 13, 5, 7, 5, 4


def _name_pattern(names):
    names = (names,) if isinstance(names, str) else names
    alternatives = "|".join(re.escape(n) for n in names)
    return rf"(?<![A-Za-z0-9_])(?:{alternatives})(?![A-Za-z0-9_])"


def expect_error(exc, names, fn, *args, numbers=(), **kwargs):
    """fn(*args, **kwargs) raises `exc`, naming one of `names`, and mentions every number in `numbers`."""
    with pytest.raises(exc, match=_name_pattern(names)) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    for n in numbers:
        assert re.search(rf"(?<![0-9]){re.escape(str(n))}(?![0-9])", msg), \
            f"message does not state {n}: {msg!r}"
    return msg


def _bad_dtype_arrays(shape):
    """Arrays of the right shape but a non-float dtype, each must give TypeError."""
    return {
        "int64": np.ones(shape, dtype=np.int64),
        "int32": np.ones(shape, dtype=np.int32),
        "bool": np.ones(shape, dtype=bool),
        "complex128": np.ones(shape, dtype=np.complex128),
        "complex64": np.ones(shape, dtype=np.complex64),
        "object": np.ones(shape, dtype=np.float64).astype(object),
        "str": np.full(shape, "1.0"),
    }


BAD_DTYPES = list(_bad_dtype_arrays((1,)))


@pytest.fixture
def lstm_args(rng):
    w_ih, w_hh, b = lstm_weights(rng, I, H, np.float32)
    return {"x": normal(rng, (B, I), np.float32), "h0": normal(rng, (B, H), np.float32),
            "c0": normal(rng, (B, H), np.float32), "w_ih": w_ih, "w_hh": w_hh, "b": b}


@pytest.fixture
def seq_args(rng):
    w_ih, w_hh, b = lstm_weights(rng, I, H, np.float32)
    return {"x": normal(rng, (B, S, I), np.float32), "h0": normal(rng, (B, H), np.float32),
            "c0": normal(rng, (B, H), np.float32), "w_ih": w_ih, "w_hh": w_hh, "b": b}


def _cell(args):
    return ops.lstm_cell_forward(args["x"], args["h0"], args["c0"], args["w_ih"], args["w_hh"], args["b"])


def _seq(args, lengths=None):
    return ops.lstm_forward(args["x"], args["h0"], args["c0"], args["w_ih"], args["w_hh"], args["b"],
                            lengths=lengths)


# --------------------------------------------------------------------------- lstm_cell_forward

# (argument, bad shape, exception names, numbers the message must state)
CELL_BAD_SHAPES = [
    ("x", (I,), "x", ()),                      # rank 1
    ("x", (B, I, 1), "x", ()),                 # rank 3
    ("h0", (H,), "h0", ()),
    ("h0", (B, H, 1), "h0", ()),
    ("h0", (2, H), "h0", (2, B)),              # B mismatch with x
    ("h0", (B, 8), ("h0", "c0"), (8, H)),      # H mismatch: blamed on h0, or on c0 if H is read from h0
    ("c0", (B,), "c0", ()),
    ("c0", (2, H), "c0", (2, B)),
    ("c0", (B, 8), "c0", (8, H)),
    ("w_ih", (4 * H, I + 6), "w_ih", (I + 6, I)),     # I mismatch with x
    ("w_ih", (4 * H - 1, I), "w_ih", (4 * H - 1,)),   # not 4H rows
    ("w_ih", (4 * H * I,), "w_ih", ()),               # rank 1
    ("w_hh", (4 * H - 1, H), "w_hh", (4 * H - 1,)),
    ("w_hh", (4 * H, 8), ("w_hh", "h0"), (8,)),
    ("w_hh", (4 * H, H, 1), "w_hh", ()),
    ("b", (4 * H - 1,), "b", (4 * H - 1,)),
    ("b", (1, 4 * H), "b", ()),
    ("b", (4 * H + 4,), ("b",), (4 * H + 4,)),
]


@pytest.mark.parametrize("arg,shape,names,numbers", CELL_BAD_SHAPES,
                         ids=[f"{a}{s}" for a, s, _, _ in CELL_BAD_SHAPES])
def test_lstm_cell_forward_bad_shape(lstm_args, arg, shape, names, numbers):
    lstm_args[arg] = np.zeros(shape, np.float32)
    expect_error(ValueError, names, _cell, lstm_args, numbers=numbers)


@pytest.mark.parametrize("bad", BAD_DTYPES)
@pytest.mark.parametrize("arg", ["x", "h0", "c0", "w_ih", "w_hh", "b"])
def test_lstm_cell_forward_bad_dtype(lstm_args, arg, bad):
    lstm_args[arg] = _bad_dtype_arrays(lstm_args[arg].shape)[bad]
    expect_error(TypeError, arg, _cell, lstm_args)


def test_lstm_cell_forward_h0_c0_none_independently(lstm_args):
    """h0 and c0 may each be None on its own, meaning zeros for that one."""
    zeros = np.zeros((B, H), np.float32)
    for missing in ("h0", "c0"):
        h1, c1, _ = _cell(dict(lstm_args, **{missing: None}))
        h1_ref, c1_ref, _ = _cell(dict(lstm_args, **{missing: zeros}))
        np.testing.assert_array_equal(h1, h1_ref, err_msg=missing)
        np.testing.assert_array_equal(c1, c1_ref, err_msg=missing)


# --------------------------------------------------------------------------- lstm_cell_backward

@pytest.fixture
def cell_cache(lstm_args):
    return _cell(lstm_args)[2]


@pytest.mark.parametrize("arg", ["dh1", "dc1"])
@pytest.mark.parametrize("shape,numbers", [((B, 8), (8, H)), ((2, H), (2, B)), ((H,), ()),
                                           ((B, H, 1), ())], ids=["H", "B", "rank1", "rank3"])
def test_lstm_cell_backward_bad_shape(rng, cell_cache, arg, shape, numbers):
    up = {"dh1": normal(rng, (B, H), np.float32), "dc1": normal(rng, (B, H), np.float32)}
    up[arg] = np.zeros(shape, np.float32)
    expect_error(ValueError, arg, ops.lstm_cell_backward, up["dh1"], up["dc1"], cell_cache,
                 numbers=numbers)


@pytest.mark.parametrize("bad", BAD_DTYPES)
@pytest.mark.parametrize("arg", ["dh1", "dc1"])
def test_lstm_cell_backward_bad_dtype(rng, cell_cache, arg, bad):
    up = {"dh1": normal(rng, (B, H), np.float32), "dc1": normal(rng, (B, H), np.float32)}
    up[arg] = _bad_dtype_arrays((B, H))[bad]
    expect_error(TypeError, arg, ops.lstm_cell_backward, up["dh1"], up["dc1"], cell_cache)


def _other_caches(rng, seq_args):
    hs = normal(rng, (B, S, H), np.float32)
    return {"lstm": _seq(seq_args)[3],
            "attention": ops.attention_weight_forward(hs, hs[:, 0], "dot")[1],
            "none": None, "dict": {}, "array": np.zeros((B, H), np.float32)}


@pytest.mark.parametrize("other", ["lstm", "attention", "none", "dict", "array"])
def test_lstm_cell_backward_wrong_cache(rng, seq_args, other):
    cache = _other_caches(rng, seq_args)[other]
    dh1 = normal(rng, (B, H), np.float32)
    expect_error(TypeError, "cache", ops.lstm_cell_backward, dh1, None, cache)


# ------------------------------------------------------------------------------- lstm_forward

SEQ_BAD_SHAPES = [
    ("x", (B, I), "x", ()),
    ("x", (B, S, I, 1), "x", ()),
    ("h0", (2, H), "h0", (2, B)),
    ("h0", (B, 8), ("h0", "c0"), (8, H)),
    ("h0", (B, S, H), "h0", ()),
    ("c0", (2, H), "c0", (2, B)),
    ("c0", (B, 8), "c0", (8, H)),
    ("w_ih", (4 * H, I + 6), "w_ih", (I + 6, I)),
    ("w_ih", (4 * H - 1, I), "w_ih", (4 * H - 1,)),
    ("w_hh", (4 * H - 1, H), "w_hh", (4 * H - 1,)),
    ("w_hh", (4 * H, 8), ("w_hh", "h0"), (8,)),
    ("b", (4 * H - 1,), "b", (4 * H - 1,)),
    ("b", (4 * H, 1), "b", ()),
]


@pytest.mark.parametrize("arg,shape,names,numbers", SEQ_BAD_SHAPES,
                         ids=[f"{a}{s}" for a, s, _, _ in SEQ_BAD_SHAPES])
def test_lstm_forward_bad_shape(seq_args, arg, shape, names, numbers):
    seq_args[arg] = np.zeros(shape, np.float32)
    expect_error(ValueError, names, _seq, seq_args, numbers=numbers)


@pytest.mark.parametrize("bad", BAD_DTYPES)
@pytest.mark.parametrize("arg", ["x", "h0", "c0", "w_ih", "w_hh", "b"])
def test_lstm_forward_bad_dtype(seq_args, arg, bad):
    seq_args[arg] = _bad_dtype_arrays(seq_args[arg].shape)[bad]
    expect_error(TypeError, arg, _seq, seq_args)


# (lengths, exception, numbers the message must state)
BAD_LENGTHS_LSTM = [
    (np.array([4.0, 5.0, 6.0]), TypeError, ()),
    (np.array([4, 5, 6], dtype=np.complex128), TypeError, ()),
    (np.array(["4", "5", "6"]), TypeError, ()),
    ([4.5, 5, 6], TypeError, ()),
    (np.array([[4, 5, 6]]), ValueError, ()),         # 2-D
    (np.array(5), ValueError, ()),                   # 0-D
    (np.array([4, 5]), ValueError, (2, B)),           # size != B
    (np.array([4, 5, 6, 7]), ValueError, (4, B)),
    (np.array([4, -1, 6]), ValueError, (-1,)),
    (np.array([4, S + 1, 6]), ValueError, (S + 1, S)),
]


@pytest.mark.parametrize("lengths,exc,numbers", BAD_LENGTHS_LSTM,
                         ids=["float", "complex", "str", "float_list", "2d", "0d", "short", "long",
                              "negative", "over_S"])
def test_lstm_forward_bad_lengths(seq_args, lengths, exc, numbers):
    expect_error(exc, "lengths", _seq, seq_args, lengths=lengths, numbers=numbers)


@pytest.mark.parametrize("arg,shape,numbers", [
    ("dhs", (B, S, 8), (8, H)), ("dhs", (B, 12, H), (12, S)), ("dhs", (2, S, H), (2, B)),
    ("dhs", (B, H), ()), ("dhT", (B, 8), (8, H)), ("dhT", (2, H), (2, B)), ("dhT", (B, S, H), ()),
    ("dcT", (B, 8), (8, H)), ("dcT", (2, H), (2, B)), ("dcT", (H,), ()),
])
def test_lstm_backward_bad_shape(rng, seq_args, arg, shape, numbers):
    cache = _seq(seq_args)[3]
    up = {"dhs": normal(rng, (B, S, H), np.float32), "dhT": normal(rng, (B, H), np.float32),
          "dcT": normal(rng, (B, H), np.float32)}
    up[arg] = np.zeros(shape, np.float32)
    expect_error(ValueError, arg, ops.lstm_backward, up["dhs"], up["dhT"], up["dcT"], cache,
                 numbers=numbers)


@pytest.mark.parametrize("bad", BAD_DTYPES)
@pytest.mark.parametrize("arg", ["dhs", "dhT", "dcT"])
def test_lstm_backward_bad_dtype(rng, seq_args, arg, bad):
    cache = _seq(seq_args)[3]
    up = {"dhs": normal(rng, (B, S, H), np.float32), "dhT": normal(rng, (B, H), np.float32),
          "dcT": normal(rng, (B, H), np.float32)}
    up[arg] = _bad_dtype_arrays(up[arg].shape)[bad]
    expect_error(TypeError, arg, ops.lstm_backward, up["dhs"], up["dhT"], up["dcT"], cache)


@pytest.mark.parametrize("other", ["cell", "attention", "none", "dict", "array"])
def test_lstm_backward_wrong_cache(rng, lstm_args, other):
    hs = normal(rng, (B, S, H), np.float32)
    cache = {"cell": _cell(lstm_args)[2],
             "attention": ops.attention_weight_forward(hs, hs[:, 0], "dot")[1],
             "none": None, "dict": {}, "array": hs}[other]
    expect_error(TypeError, "cache", ops.lstm_backward, hs, None, None, cache)


# ---------------------------------------------------------------------- attention_weight_forward

@pytest.fixture
def att(rng):
    return {"hs": normal(rng, (B, S, H), np.float32), "q": normal(rng, (B, H), np.float32),
            "q3": normal(rng, (B, T, H), np.float32)}


@pytest.mark.parametrize("arg,shape,numbers", [
    ("hs", (B, H), ()), ("hs", (B, S, H, 1), ()), ("hs", (B * S * H,), ()),
    ("q", (H,), ()), ("q", (B, T, H, 1), ()),
    ("q", (B, 8), (8, H)), ("q", (2, H), (2, B)), ("q", (B, T, 8), (8, H)), ("q", (2, T, H), (2, B)),
])
@pytest.mark.parametrize("kind", ["dot", "concat"])
def test_attention_forward_bad_shape(rng, att, kind, arg, shape, numbers):
    args = {"hs": att["hs"], "q": att["q"]}
    args[arg] = np.zeros(shape, np.float32)
    params = attention_params(rng, kind, H, np.float32, A=A)
    expect_error(ValueError, arg, ops.attention_weight_forward, args["hs"], args["q"], kind, params,
                 numbers=numbers)


@pytest.mark.parametrize("bad", BAD_DTYPES)
@pytest.mark.parametrize("arg", ["hs", "q"])
def test_attention_forward_bad_dtype(att, arg, bad):
    args = {"hs": att["hs"], "q": att["q"]}
    args[arg] = _bad_dtype_arrays(args[arg].shape)[bad]
    expect_error(TypeError, arg, ops.attention_weight_forward, args["hs"], args["q"], "dot")


@pytest.mark.parametrize("kind", ["foo", "", "Dot ", "luong"])
def test_attention_unknown_kind(att, kind):
    msg = expect_error(ValueError, "kind", ops.attention_weight_forward, att["hs"], att["q"], kind)
    assert kind in msg, f"message does not state the bad kind {kind!r}: {msg!r}"
    assert all(k in msg for k in ("dot", "scaled_dot", "general", "concat", "location")), \
        f"message does not list the valid kinds: {msg!r}"


@pytest.mark.parametrize("kind", [1, None, b"dot", ("dot",)], ids=["int", "None", "bytes", "tuple"])
def test_attention_kind_not_str(att, kind):
    expect_error(TypeError, "kind", ops.attention_weight_forward, att["hs"], att["q"], kind)


def _p(rng, *shapes):
    return tuple(normal(rng, s, np.float32) for s in shapes)


BAD_PARAMS = [
    ("dot", [(H, H)], ()),
    ("scaled_dot", [(H, H)], ()),
    ("general", [], ()),
    ("general", [(H, H), (H, H)], ()),
    ("general", [(H, 8)], (8, H)),
    ("general", [(8, H)], (8, H)),
    ("general", [(H * H,)], ()),
    ("concat", [(A, H), (A, H)], ()),
    ("concat", [(A, H), (A, H), (A,), (A,), (A,)], ()),    # 4 is concat with its query bias b_q
    ("concat", [(A, H), (A, H), (A,), (A + 6,)], (A + 6, A)),  # b_q of another A
    ("concat", [(A, H), (A, H), (A,), (A, 1)], ()),        # b_q not 1-D
    ("concat", [(A, 8), (A, H), (A,)], (8, H)),
    ("concat", [(A, H), (A, 8), (A,)], (8, H)),
    ("concat", [(A, H), (A + 6, H), (A,)], (A + 6, A)),   # A mismatch between W_q and W_k
    ("concat", [(A, H), (A, H), (A + 6,)], (A + 6, A)),   # A mismatch between W_q and v
    ("concat", [(A, H), (A, H), (A, 1)], ()),              # v not 1-D
    ("location", [], ()),
    ("location", [(S + 3, 8)], (8, H)),
    ("location", [(S + 3,)], ()),
]


@pytest.mark.parametrize("kind,shapes,numbers", BAD_PARAMS,
                         ids=[f"{k}-{len(s)}-{i}" for i, (k, s, _) in enumerate(BAD_PARAMS)])
def test_attention_bad_params(rng, att, kind, shapes, numbers):
    expect_error(ValueError, "params", ops.attention_weight_forward, att["hs"], att["q"], kind,
                 _p(rng, *shapes), numbers=numbers)


def test_attention_location_longer_than_s_max(rng, att):
    """S = 13 > S_max = 10: the source is longer than W_a has rows for."""
    expect_error(ValueError, ("params", "hs", "S_max", "W_a"), ops.attention_weight_forward,
                 att["hs"], att["q"], "location", _p(rng, (10, H)), numbers=(S, 10))


@pytest.mark.parametrize("bad", BAD_DTYPES)
@pytest.mark.parametrize("kind,index", [("general", 0), ("concat", 1), ("concat", 2), ("location", 0)])
def test_attention_params_bad_dtype(rng, att, kind, index, bad):
    params = list(attention_params(rng, kind, H, np.float32, A=A, S_max=S))
    params[index] = _bad_dtype_arrays(params[index].shape)[bad]
    expect_error(TypeError, "params", ops.attention_weight_forward, att["hs"], att["q"], kind,
                 tuple(params))


BAD_LENGTHS_ATT = BAD_LENGTHS_LSTM + [(np.array([4, 0, 6]), ValueError, (0,))]


@pytest.mark.parametrize("lengths,exc,numbers", BAD_LENGTHS_ATT,
                         ids=["float", "complex", "str", "float_list", "2d", "0d", "short", "long",
                              "negative", "over_S", "zero"])
@pytest.mark.parametrize("qmode", ["q", "q3"])
def test_attention_bad_lengths(att, qmode, lengths, exc, numbers):
    expect_error(exc, "lengths", ops.attention_weight_forward, att["hs"], att[qmode], "dot", (),
                 lengths, numbers=numbers)


# --------------------------------------------------------------------- attention_weight_backward

@pytest.mark.parametrize("qmode,shape,numbers", [
    ("q", (B, 12), (12, S)), ("q", (2, S), (2, B)), ("q", (B, T, S), ()), ("q", (S,), ()),
    ("q3", (B, T, 12), (12, S)), ("q3", (B, 6, S), (6, T)), ("q3", (B, S), ()),
])
def test_attention_backward_bad_da(att, qmode, shape, numbers):
    _, cache = ops.attention_weight_forward(att["hs"], att[qmode], "dot")
    expect_error(ValueError, "da", ops.attention_weight_backward, np.zeros(shape, np.float32), cache,
                 numbers=numbers)


@pytest.mark.parametrize("bad", BAD_DTYPES)
def test_attention_backward_bad_dtype(att, bad):
    _, cache = ops.attention_weight_forward(att["hs"], att["q"], "dot")
    expect_error(TypeError, "da", ops.attention_weight_backward, _bad_dtype_arrays((B, S))[bad], cache)


@pytest.mark.parametrize("other", ["lstm", "cell", "none", "dict", "array"])
def test_attention_backward_wrong_cache(rng, seq_args, lstm_args, other):
    cache = {"lstm": _seq(seq_args)[3], "cell": _cell(lstm_args)[2], "none": None, "dict": {},
             "array": np.zeros((B, S), np.float32)}[other]
    expect_error(TypeError, "cache", ops.attention_weight_backward, np.zeros((B, S), np.float32), cache)


# ----------------------------------------------------------------------------------- weight_sum

@pytest.mark.parametrize("arg,shape,numbers", [
    ("hs", (B, S), ()), ("hs", (B, S, H, 1), ()),
    ("a", (S,), ()), ("a", (B, T, S, 1), ()),
    ("a", (B, 12), (12, S)), ("a", (2, S), (2, B)), ("a", (B, T, 12), (12, S)), ("a", (2, T, S), (2, B)),
])
def test_weight_sum_forward_bad_shape(att, arg, shape, numbers):
    args = {"hs": att["hs"], "a": np.full((B, S), 1.0 / S, np.float32)}
    args[arg] = np.zeros(shape, np.float32)
    expect_error(ValueError, arg, ops.weight_sum_forward, args["hs"], args["a"], numbers=numbers)


@pytest.mark.parametrize("bad", BAD_DTYPES)
@pytest.mark.parametrize("arg", ["hs", "a"])
def test_weight_sum_forward_bad_dtype(att, arg, bad):
    args = {"hs": att["hs"], "a": np.full((B, S), 1.0 / S, np.float32)}
    args[arg] = _bad_dtype_arrays(args[arg].shape)[bad]
    expect_error(TypeError, arg, ops.weight_sum_forward, args["hs"], args["a"])


@pytest.mark.parametrize("arg,shape,numbers", [
    ("dc", (B, 8), (8, H)), ("dc", (2, H), (2, B)), ("dc", (B, T, H), ()), ("dc", (H,), ()),
    ("hs", (B, S), ()), ("a", (B, 12), (12, S)), ("a", (2, S), (2, B)),
])
def test_weight_sum_backward_bad_shape(rng, att, arg, shape, numbers):
    args = {"dc": normal(rng, (B, H), np.float32), "hs": att["hs"],
            "a": np.full((B, S), 1.0 / S, np.float32)}
    args[arg] = np.zeros(shape, np.float32)
    expect_error(ValueError, arg, ops.weight_sum_backward, args["dc"], args["hs"], args["a"],
                 numbers=numbers)


@pytest.mark.parametrize("bad", BAD_DTYPES)
@pytest.mark.parametrize("arg", ["dc", "hs", "a"])
def test_weight_sum_backward_bad_dtype(rng, att, arg, bad):
    args = {"dc": normal(rng, (B, H), np.float32), "hs": att["hs"],
            "a": np.full((B, S), 1.0 / S, np.float32)}
    args[arg] = _bad_dtype_arrays(args[arg].shape)[bad]
    expect_error(TypeError, arg, ops.weight_sum_backward, args["dc"], args["hs"], args["a"])


# ------------------------------------------------------------------------------ NaN propagation

@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_nan_propagates_lstm(rng, seq_args, dtype):
    args = {k: v.astype(dtype) for k, v in seq_args.items()}
    args["x"][0, 4, 2] = np.nan
    hs, hT, cT, cache = _seq(args)
    assert np.isnan(hs[0, 4:]).all() and np.isnan(hT[0]).all() and np.isnan(cT[0]).all()
    assert np.isfinite(hs[0, :4]).all() and np.isfinite(hs[1:]).all()
    assert np.isfinite(hT[1:]).all() and np.isfinite(cT[1:]).all()
    dx, dh0, dc0, dw_ih, dw_hh, db = ops.lstm_backward(np.ones_like(hs), None, None, cache)
    assert np.isnan(dx[0, :5]).any() and np.isnan(dw_ih).any() and np.isnan(db).any()
    assert np.isfinite(dx[1:]).all(), "NaN in batch row 0 leaked into the gradients of other rows"

    h1, c1, cell_cache = ops.lstm_cell_forward(args["x"][:, 4], args["h0"], args["c0"],
                                               args["w_ih"], args["w_hh"], args["b"])
    assert np.isnan(h1[0]).all() and np.isfinite(h1[1:]).all()
    dh1 = np.ones_like(h1)
    dh1[2, 0] = np.nan
    dx, dh0, dc0, dw_ih, dw_hh, db = ops.lstm_cell_backward(dh1, None, cell_cache)
    assert np.isnan(dx[2]).any() and np.isfinite(dx[1]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_nan_in_lstm_padding_is_ignored(rng, seq_args, dtype):
    """Padding is not part of the sequence: garbage there (NaN) changes nothing, as with packed
    sequences in PyTorch."""
    args = {k: v.astype(dtype) for k, v in seq_args.items()}
    lengths = np.array([4, S, 1])
    dirty = dict(args, x=args["x"].copy())
    for b, n in enumerate(lengths):
        dirty["x"][b, n:] = np.nan
    up = (normal(rng, (B, S, H), dtype), normal(rng, (B, H), dtype), normal(rng, (B, H), dtype))
    clean_fwd = _seq(args, lengths)
    dirty_fwd = _seq(dirty, lengths)
    for name, c, d in zip(("hs", "hT", "cT"), clean_fwd[:3], dirty_fwd[:3]):
        np.testing.assert_array_equal(d, c, err_msg=name)
    clean = ops.lstm_backward(*up, clean_fwd[3])
    dirty_grads = ops.lstm_backward(*up, dirty_fwd[3])
    for name, c, d in zip(("dx", "dh0", "dc0", "dw_ih", "dw_hh", "db"), clean, dirty_grads):
        np.testing.assert_array_equal(d, c, err_msg=name)


@pytest.mark.parametrize("kind", ["dot", "scaled_dot", "general", "concat", "location"])
def test_nan_propagates_attention(rng, att, kind):
    hs = att["hs"].copy()
    hs[1, 5, 3] = np.nan
    q = att["q3"].copy()
    params = attention_params(rng, kind, H, np.float32, A=A, S_max=S)
    a, cache = ops.attention_weight_forward(hs, q, kind, params)
    if kind != "location":       # location scores do not read hs
        assert np.isnan(a[1]).all(), "a NaN score must make its whole softmax row NaN"
    assert np.isfinite(a[0]).all() and np.isfinite(a[2]).all()
    dhs, dq, dparams = ops.attention_weight_backward(np.ones_like(a), cache)
    assert np.isfinite(dq[0]).all() and np.isfinite(dq[2]).all()

    q[2, 1, 0] = np.nan
    a, _ = ops.attention_weight_forward(att["hs"], q, kind, params)
    assert np.isnan(a[2, 1]).all() and np.isfinite(a[2, 0]).all() and np.isfinite(a[0]).all()


@pytest.mark.parametrize("kind", ["dot", "scaled_dot", "general", "concat", "location"])
def test_nan_in_attention_padding_is_ignored(rng, att, kind):
    """Masked source positions are never part of the softmax: NaN there leaves a unchanged."""
    lengths = np.array([4, S, 1])
    params = attention_params(rng, kind, H, np.float32, A=A, S_max=S)
    dirty = att["hs"].copy()
    for b, n in enumerate(lengths):
        dirty[b, n:] = np.nan
    a_clean, _ = ops.attention_weight_forward(att["hs"], att["q3"], kind, params, lengths)
    a_dirty, _ = ops.attention_weight_forward(dirty, att["q3"], kind, params, lengths)
    np.testing.assert_array_equal(a_dirty, a_clean)


def test_nan_propagates_weight_sum(att):
    a = np.full((B, T, S), 1.0 / S, np.float32)
    hs = att["hs"].copy()
    hs[0, 3, 6] = np.nan
    c = ops.weight_sum_forward(hs, a)
    assert np.isnan(c[0, :, 6]).all()
    assert np.isfinite(np.delete(c[0], 6, axis=-1)).all() and np.isfinite(c[1:]).all()
    dhs, da = ops.weight_sum_backward(np.ones_like(c), hs, a)
    assert np.isnan(da[0, :, 3]).all() and np.isfinite(da[1:]).all()
    assert np.isfinite(dhs).all()      # dhs = a^T dc reads no hs


def test_inf_input_does_not_crash(seq_args):
    args = dict(seq_args, x=seq_args["x"].copy())
    args["x"][1, 2, 0] = np.inf
    args["x"][2, 3, 1] = -np.inf
    hs, hT, cT, cache = _seq(args)
    assert hs.shape == (B, S, H)
    assert np.isfinite(hs[0]).all()                # other rows untouched
    grads = ops.lstm_backward(np.ones_like(hs), None, None, cache)
    assert grads[0].shape == (B, S, I)


# ------------------------------------------------ caches and inputs changed between forward and backward

def _lstm_case(rng, dtype=np.float32, B=3, S=5, I=4, H=6):
    x = rng.standard_normal((B, S, I)).astype(dtype)
    w = (rng.standard_normal((4 * H, I)).astype(dtype), rng.standard_normal((4 * H, H)).astype(dtype),
         rng.standard_normal(4 * H).astype(dtype))
    return x, w


def test_lstm_backward_refuses_a_reshaped_input(rng):
    x, (w_ih, w_hh, b) = _lstm_case(rng)
    *_, cache = ops.lstm_forward(x, None, None, w_ih, w_hh, b)
    w_hh.shape = (6, 24)  # the cache holds the caller's w_hh itself
    with pytest.raises(ValueError, match=r"cache\.w_hh is not what the forward left"):
        ops.lstm_backward(None, None, None, cache)


def test_lstm_backward_refuses_lengths_changed_in_the_cache(rng):
    x, w = _lstm_case(rng)
    lengths = np.array([5, 2, 0])
    *_, cache = ops.lstm_forward(x, None, None, *w, lengths=lengths)
    lengths[0] = 10**6  # the caller's array: the cache has its own copy
    ops.lstm_backward(None, None, None, cache)
    cache.lengths[0] = 10**6  # the cache's copy, reachable from Python: checked again
    with pytest.raises(ValueError, match=r"cache\.lengths\[0\] = 1000000 is out of range"):
        ops.lstm_backward(None, None, None, cache)


def test_attention_backward_refuses_changed_cache(rng):
    hs = rng.standard_normal((3, 5, 6)).astype(np.float32)
    q = rng.standard_normal((3, 6)).astype(np.float32)
    lengths = np.array([5, 3, 1])
    a, cache = ops.attention_weight_forward(hs, q, "dot", (), lengths)
    lengths[2] = 100000  # the caller's array: no effect
    ops.attention_weight_backward(a, cache)
    cache.lengths[2] = 100000
    with pytest.raises(ValueError, match=r"cache\.lengths\[2\]"):
        ops.attention_weight_backward(a, cache)
    cache.lengths[2] = 1
    cache.a.dtype = np.int32  # a view change of the cache's own array
    with pytest.raises(ValueError, match=r"cache\.a is not what the forward left"):
        ops.attention_weight_backward(a, cache)


def test_failed_conversion_raises_numpy_error():
    # copying a broadcast view this large needs 4 TiB: numpy's MemoryError, never a crash
    huge = np.broadcast_to(np.float32(1), (1, 2**20, 2**20))
    with pytest.raises(MemoryError):
        ops.weight_sum_forward(huge, np.zeros((1, 1, 2**20), np.float32))


def test_misaligned_input_is_copied(rng):
    buf = bytearray(4 * 3 * 5 * 7 + 1)
    x = np.frombuffer(buf, np.float32, offset=1, count=3 * 5 * 7).reshape(3, 5, 7)  # not 4-byte aligned
    assert x.ctypes.data % 4 != 0
    aligned = rng.standard_normal((3, 5, 7)).astype(np.float32)
    x_writable = np.ndarray(x.shape, x.dtype, buffer=buf, offset=1)
    x_writable[...] = aligned
    w = (rng.standard_normal((24, 7)).astype(np.float32), rng.standard_normal((24, 6)).astype(np.float32),
         rng.standard_normal(24).astype(np.float32))
    ours = ops.lstm_forward(x, None, None, *w)[0]
    assert np.array_equal(ours, ops.lstm_forward(aligned, None, None, *w)[0])
