"""The rules of a decode's arguments, checked once at the Python boundary of the one search
(src/cpp/engine/search.cpp, run by :class:`s2sext.Decoder` and :class:`s2sext.Seq2Seq`), GNMT's
length penalty, and the float32 range rule of a model's weights.

The search itself is C++ only; a plain numpy reference of it lives in tests/reference_search.py.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from .checks import check_int as _check_int

# The compiled decoder's limits (src/cpp/engine/engine.h: kMaxBeamSize), checked here for the model layer
# too so that both refuse the same arguments: step counts are int64, beams at most this many.
MAX_BEAM_SIZE = 65536
_INT64_MAX = 2**63 - 1


def check_lengths(max_length, min_length):
    """``(max_length, min_length)`` as ints: TypeError naming the argument unless each is an
    integer (not a bool), ValueError unless ``0 <= min_length <= max_length`` and
    ``1 <= max_length <= 2**63 - 1``."""
    max_length = _check_int(max_length, "max_length", 1, _INT64_MAX)
    min_length = _check_int(min_length, "min_length", 0, _INT64_MAX)
    if min_length > max_length:
        raise ValueError(f"min_length ({min_length}) must not exceed max_length ({max_length})")
    return max_length, min_length


def check_beam_args(beam_size, n_best, length_penalty):
    """``(beam_size, n_best, length_penalty)`` as int, int, float: TypeError naming the argument
    unless they are integers and a real number (no bools), ValueError unless
    ``1 <= n_best <= beam_size <= MAX_BEAM_SIZE`` and length_penalty is finite and >= 0."""
    beam_size = _check_int(beam_size, "beam_size", 1, MAX_BEAM_SIZE)
    n_best = _check_int(n_best, "n_best", 1, MAX_BEAM_SIZE)
    if n_best > beam_size:
        raise ValueError(f"n_best ({n_best}) must not exceed beam_size ({beam_size})")
    if isinstance(length_penalty, bool) or not isinstance(length_penalty, numbers.Real):
        raise TypeError(f"length_penalty must be a finite number >= 0, got {type(length_penalty).__name__} "
                        f"{length_penalty!r}")
    if not math.isfinite(length_penalty) or length_penalty < 0:
        raise ValueError(f"length_penalty must be a finite number >= 0, got {length_penalty!r}")
    return beam_size, n_best, float(length_penalty)


# Bounds below this are safe in float32 whatever the order of a sum: float32's largest value,
# halved to cover rounding on the way and bfloat16 storage (weights up to 2**-8 larger).
_FLOAT32_SAFE = float(np.finfo(np.float32).max) / 2


def check_float32_range(config: dict, params: dict) -> None:
    """ValueError unless no product of the model's inference can overflow float32.

    Every input of a product is bounded: an embedding row, ``h = o * tanh(c)`` (|h| <= 1), an
    attentional state (tanh), a context (a convex combination of memory rows), the bridge's
    outputs. So ``|W| @ bound(x) + |b|`` bounds every pre-activation, score and logit, and each
    partial sum of it in any order. Past float32's range the result would be inf or NaN, and which
    one depends on the order and fusion of the sums, which differ between the model layer (its
    kernels, the batch size) and the compiled decoder (its table of embedding products): with
    weights of 1e30 the two gave different tokens. Such a model is refused, by both, up front:
    this function serves the model layer's greedy and beam search (per call); the compiled decoder
    and the C++ API apply the same rule, with the same message, in C++ when the engine is built
    (``check_float32_range`` in src/cpp/engine/engine.cpp; tests/test_engine.py holds the two to one
    verdict). Costs one pass over the parameters; a model whose coarse bound is far inside the
    range (every realistic one) is accepted after a cheap pass of max/min reductions.
    """
    if _coarse_float32_bound(params) <= _FLOAT32_SAFE:
        return
    _check_float32_range_exactly(config, params)


def _coarse_float32_bound(params: dict) -> float:
    """An upper bound of every value :func:`_check_float32_range_exactly` bounds, from two numbers:
    M = max(1, the largest |parameter|) and Z = F * M with F = 3 * (the largest dimension) + 1, which
    is at least the fan-in of any of its sums (at most three matrix terms and a bias). Each stage
    of the model multiplies its inputs' bound by at most Z (an LSTM's h and a tanh stay below 1);
    the longest chain (the embedding, a bridge, a score of the general kind (q W_a) . hs over a
    bridged memory, or a decoder gate fed a combine layer without tanh) stays below Z**4 * M. The
    factor 4 covers the rounding of the float64 sums. NaN or inf give inf (then the exact check
    names the parameter)."""
    M, largest = 1.0, 1
    for value in params.values():
        if value.size:
            hi, lo = float(np.max(value)), float(np.min(value))  # NaN if the array holds one
            if not (math.isfinite(hi) and math.isfinite(lo)):
                return math.inf
            M, largest = max(M, hi, -lo), max(largest, *value.shape)
    Z = (3 * largest + 1) * M
    return 4.0 * Z**4 * M if Z < 1e30 else math.inf  # (a float power past 1e308 would raise)


def _check_float32_range_exactly(config: dict, params: dict) -> None:
    """The rule of :func:`check_float32_range`, computed exactly (in float64) from the weights."""
    H, L = config["hidden_size"], config["num_layers"]
    ones = np.ones(H)
    # the version-2 keys of docs/model-format.md, absent from older configuration dicts
    bridge_concat = config.get("bridge", "linear") == "concat"
    combine_tanh = config.get("combine_activation", "tanh") == "tanh"
    query_bias = config.get("attention_query_bias", False)
    He = H // 2 if bridge_concat else H  # one encoder direction's size

    def absolute(name):
        return np.abs(np.asarray(params[name], np.float64))

    def refuse_past_range(what, value, names):
        top = float(np.max(value, initial=0.0))
        if not top <= _FLOAT32_SAFE:  # NaN too
            raise ValueError(
                f"the model's {what} can reach {top:.3g} in absolute value ({', '.join(names)}), past float32's "
                f"range (largest {float(np.finfo(np.float32).max):.3g}): decoding would give inf or NaN; the "
                "weights are too large or not finite"
            )
        return value

    def bound(what, *terms):
        """sum of |W| @ x over the terms (|b| where x is None), each row's bound; checked."""
        total = sum(absolute(name) @ x if x is not None else absolute(name) for name, x in terms)
        return refuse_past_range(what, total, [name for name, _ in terms])

    directions = ("", "_reverse") if config["bidirectional"] else ("",)
    x = absolute("src_embed").max(axis=0, initial=0.0)
    for k in range(L):
        for suffix in directions:
            p = f"encoder.l{k}{suffix}"
            bound(f"{p} gates", (f"{p}.w_ih", x), (f"{p}.w_hh", np.ones(He)), (f"{p}.b", None))
        x = np.ones(len(directions) * He)
    h0 = memory = ones
    attention, bahdanau = config["attention"], config["attention_style"] == "bahdanau"
    if config["bidirectional"] and not bridge_concat:  # the bridge's outputs: the decoder's h0 and the attention memory
        h0 = np.maximum(ones, bound("bridge.h output", ("bridge.h.weight", x), ("bridge.h.bias", None)))
        if attention is not None:
            memory = bound("attention memory", ("bridge.memory.weight", x))
    query = h0 if bahdanau else ones  # Bahdanau's first query is the initial state
    if attention in ("dot", "scaled_dot"):
        refuse_past_range("attention scores", query @ memory, ["the attention memory"])
    elif attention == "general":  # the model sums (q W_a) . hs, the compiled decoder q . (W_a hs)
        w_a = absolute("attention.w_a")
        refuse_past_range("attention scores", np.concatenate([w_a @ memory, query @ w_a, [query @ w_a @ memory]]),
                          ["attention.w_a"])
    elif attention == "concat":  # the query bias is in the model's query, the compiled decoder's keys
        bias = [("attention.b_q", None)] if query_bias else []
        bound("attention query projection", ("attention.w_q", query), *bias)
        bound("attention keys", ("attention.w_k", memory), *bias)
        refuse_past_range("attention scores", absolute("attention.v").sum(), ["attention.v"])
    elif attention == "location":
        bound("attention scores", ("attention.w_a", query))
    o = ones  # the output layer's input: h, or the attentional state (tanh, or unbounded but by this)
    if attention is not None:
        combined = bound("combine layer", ("combine.weight", np.concatenate([memory, ones])), ("combine.bias", None))
        if not combine_tanh:
            o = np.maximum(ones, combined)
    extra = []
    if attention is not None and (bahdanau or config["input_feeding"]):
        extra = [memory if bahdanau else o]
    x = np.concatenate([absolute("tgt_embed").max(axis=0, initial=0.0)] + extra)
    for k in range(L):
        p = f"decoder.l{k}"
        bound(f"{p} gates", (f"{p}.w_ih", x), (f"{p}.w_hh", h0), (f"{p}.b", None))
        x = ones
    bound("logits", ("out.weight", o), ("out.bias", None))


def check_translate_args(beam, n_best):
    """``(beam, n_best)`` of a ``translate`` as ints (the rules of :func:`check_beam_args`), checked
    before ``beam == 1`` picks greedy decoding."""
    return _check_int(beam, "beam", 1, MAX_BEAM_SIZE), _check_int(n_best, "n_best", 1, MAX_BEAM_SIZE)


def length_penalty_factor(length, alpha):
    """GNMT's length penalty ``((5 + |Y|) / 6) ** alpha``; scores are ``log P(Y) / factor``.
    A factor past float64's range is ``inf``, as C's ``pow`` (the compiled decoder's) gives it."""
    try:
        return ((5.0 + length) / 6.0) ** alpha
    except OverflowError:
        return math.inf
