"""The rules of a decode's arguments, checked once at the Python boundary of the one search
(src/cpp/engine/search.cpp, run by :class:`s2sext.Decoder` and :class:`s2sext.Seq2Seq`), GNMT's
length penalty, and the float32 range rule of a model's weights.

The search itself is C++ only; a plain numpy reference of it lives in tests/reference_search.py.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from . import _core
from .checks import check_bool, check_real, is_int, short_repr
from .checks import check_int as _check_int
from .spec import UNK_ID

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


_UINT64_MAX = 2**64 - 1


def _check_open_low(value, name, maximum, expected):
    """``value`` as a float in ``(0, maximum]`` (TypeError/ValueError naming ``name``)."""
    value = check_real(value, name, 0.0, maximum, expected=expected)
    if value == 0:
        raise ValueError(f"{name} must be {expected}, got {short_repr(value)}")
    return float(value)


def check_target_prefix(target_prefix, batch, vocab_size, max_length):
    """``target_prefix`` as a list of ``batch`` lists of ints (None: no prefix; an entry None: none
    for that input): TypeError unless a list/tuple of None or sequences of integers, ValueError
    unless it has one entry per input, each id lies in ``[UNK_ID, vocab_size)`` (no ``<pad>``,
    ``<sos>`` or ``<eos>``) and no entry is longer than ``max_length`` (refused, not cut)."""
    if target_prefix is None:
        return None
    if not isinstance(target_prefix, (list, tuple)):
        raise TypeError(f"target_prefix must be a list (one list of token ids per input) or None, got "
                        f"{type(target_prefix).__name__} {short_repr(target_prefix)}")
    if len(target_prefix) != batch:
        raise ValueError(f"target_prefix must have one entry per input ({batch}), got {len(target_prefix)}")
    checked = []
    for i, entry in enumerate(target_prefix):
        if entry is None:
            checked.append([])
            continue
        if isinstance(entry, np.ndarray):
            entry = entry.tolist() if entry.ndim == 1 else entry
        if not isinstance(entry, (list, tuple)) or not all(is_int(t) for t in entry):
            raise TypeError(f"target_prefix[{i}] must be a list of int token ids or None, got {short_repr(entry)}")
        ids = [int(t) for t in entry]
        bad = [t for t in ids if not UNK_ID <= t < vocab_size]
        if bad:
            raise ValueError(f"target_prefix[{i}] ids must lie in [{UNK_ID}, {vocab_size}) (the target vocabulary "
                             f"without <pad>, <sos>, <eos>), got {bad[0]}")
        if len(ids) > max_length:
            raise ValueError(f"target_prefix[{i}] has {len(ids)} tokens, more than max_length ({max_length})")
        checked.append(ids)
    return checked


def check_generate_args(beam_size, n_best, length_penalty, coverage_penalty, no_repeat_ngram_size,
                        sampling_temperature, sampling_topk, sampling_topp, seed, return_attention,
                        return_token_scores):
    """The options of :meth:`s2sext.Decoder.generate` beside the lengths and the prefix, as Python
    values: the rules of :func:`check_beam_args`, then ``coverage_penalty`` a finite number >= 0,
    ``no_repeat_ngram_size`` and ``sampling_topk`` ints >= 0, ``sampling_temperature`` a finite
    number > 0, ``sampling_topp`` in (0, 1], ``seed`` an int in [0, 2**64), two bools. Sampling
    (any of topk, topp, temperature off its default) needs ``beam_size == 1`` (ValueError), as in
    CTranslate2. TypeError or ValueError naming the argument."""
    beam_size, n_best, length_penalty = check_beam_args(beam_size, n_best, length_penalty)
    coverage_penalty = float(check_real(coverage_penalty, "coverage_penalty", 0.0, math.inf,
                                        expected="a finite number >= 0"))
    if math.isinf(coverage_penalty):
        raise ValueError(f"coverage_penalty must be a finite number >= 0, got {coverage_penalty!r}")
    no_repeat_ngram_size = _check_int(no_repeat_ngram_size, "no_repeat_ngram_size", 0, _INT64_MAX)
    sampling_temperature = _check_open_low(sampling_temperature, "sampling_temperature", math.inf,
                                           "a finite number > 0")
    if math.isinf(sampling_temperature):
        raise ValueError(f"sampling_temperature must be a finite number > 0, got {sampling_temperature!r}")
    sampling_topk = _check_int(sampling_topk, "sampling_topk", 0, _INT64_MAX)
    sampling_topp = _check_open_low(sampling_topp, "sampling_topp", 1.0, "a number in (0, 1]")
    seed = _check_int(seed, "seed", 0, _UINT64_MAX)
    if beam_size > 1 and (sampling_topk != 1 or sampling_topp != 1.0 or sampling_temperature != 1.0):
        raise ValueError(f"sampling (sampling_topk != 1, sampling_topp != 1 or sampling_temperature != 1) needs "
                         f"beam_size 1, got beam_size {beam_size}")
    return (beam_size, n_best, length_penalty, coverage_penalty, no_repeat_ngram_size, sampling_temperature,
            sampling_topk, sampling_topp, seed, check_bool(return_attention, "return_attention"),
            check_bool(return_token_scores, "return_token_scores"))


def check_float32_range(config: dict, params: dict) -> None:
    """ValueError unless no product of the model's inference can overflow float32.

    Every input of a product is bounded: an embedding row, ``h = o * tanh(c)`` (|h| <= 1), an
    attentional state (tanh), a context (a convex combination of memory rows), the bridge's
    outputs. So ``|W| @ bound(x) + |b|`` bounds every pre-activation, score and logit, and each
    partial sum of it in any order. Past float32's range the result would be inf or NaN, and which
    one depends on the order and fusion of the sums, which differ between implementations: with
    weights of 1e30 two of them gave different tokens. Such a model is refused up front by the
    compiled decoder (and so by Seq2Seq's decoding) and the C++ API; this runs the same check
    (``src/cpp/engine/range_check.cpp``) without building a decoder. A missing or misshapen
    parameter is a ValueError too. tests/reference_range.py computes the rule again in numpy and
    the tests hold the two to one verdict and message.
    """
    _core.check_float32_range(config, {name: np.asarray(value, np.float32) for name, value in params.items()})


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


def greedy_search(model, src_ids, lengths=None, max_length=50, min_length=0, return_attention=False):
    """``model.greedy(...)``: greedy decoding with the C++ search (kept under its old name; the
    search itself is src/cpp/engine/search.cpp)."""
    return model.greedy(src_ids, lengths, max_length, min_length, return_attention)


def beam_search(model, src_ids, lengths=None, beam_size=5, max_length=50, min_length=0, n_best=1,
                length_penalty=0.0):
    """``model.beam_search(...)``: beam search with the C++ search (kept under its old name)."""
    return model.beam_search(src_ids, lengths, beam_size, max_length, min_length, n_best, length_penalty)
