"""The int8 rule (runtime/quantize.h, bound as _core.quantize_int8 / dequantize_int8) against a numpy
statement of it, and its idempotence: the property int8 model files rely on."""
import numpy as np
import pytest

from s2sext import _core


def reference_quantize(w):
    """Symmetric per row: scale = max|row| / 127 (a float32 division), q = round half to even."""
    w = np.asarray(w, np.float32)
    scale = (np.abs(w).max(axis=1) / np.float32(127)).astype(np.float32)
    safe = np.where(scale == 0, np.float32(1), scale)
    q = np.clip(np.rint(w / safe[:, None]), -127, 127).astype(np.int8)
    return q, scale


@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (13, 255), (64, 1)])
def test_quantize_matches_the_rule_and_round_trips(shape):
    rng = np.random.default_rng(sum(shape))
    w = rng.standard_normal(shape).astype(np.float32)
    q, scale = _core.quantize_int8(w)
    assert q.dtype == np.int8 and q.shape == shape and scale.dtype == np.float32 and scale.shape == (shape[0],)
    ref_q, ref_scale = reference_quantize(w)
    assert np.array_equal(scale, ref_scale)
    assert np.array_equal(q, ref_q)
    assert np.array_equal(np.abs(q).max(axis=1), np.full(shape[0], 127))  # every row's maximum is +-127
    # the error of a dequantized value is at most half a step
    d = _core.dequantize_int8(q, scale)
    assert np.array_equal(d, q.astype(np.float32) * scale[:, None])
    assert np.all(np.abs(d - w) <= 0.5 * scale[:, None] * (1 + 1e-5))


def test_quantize_is_idempotent_over_many_magnitudes():
    rng = np.random.default_rng(0)
    # magnitudes from 1e-30 to 1e30: normal float32 scales throughout
    w = (rng.standard_normal((20000, 9)) * 10.0 ** rng.uniform(-30, 30, (20000, 1))).astype(np.float32)
    q, scale = _core.quantize_int8(w)
    d = _core.dequantize_int8(q, scale)
    q2, scale2 = _core.quantize_int8(d)
    assert np.array_equal(scale, scale2)
    assert np.array_equal(q, q2)


def test_scale_round_trip_holds_for_a_whole_binade():
    # Why the rule is idempotent: the requantized scale is (127 * s) / 127 with s = m / 127, and
    # that gives s back for every float32 m in [1, 2) (all 2^23 of them); powers of two scale the
    # whole computation exactly, so it holds for every normal s. (An arbitrary float32 s does not
    # have the property: about 0.8% fail; the rule only ever produces quotients m / 127.)
    m = np.arange(0x3F800000, 0x40000000, dtype=np.uint32).view(np.float32)
    s = m / np.float32(127)
    assert np.array_equal((s * np.float32(127)) / np.float32(127), s)


def test_zero_rows_have_scale_zero():
    w = np.zeros((2, 5), np.float32)
    w[1, 3] = -2.5
    q, scale = _core.quantize_int8(w)
    assert scale[0] == 0 and not q[0].any()
    assert q[1, 3] == -127 and scale[1] > 0


def test_quantize_refuses_bad_input():
    with pytest.raises(ValueError, match="w must be finite"):
        _core.quantize_int8(np.array([[1.0, np.nan]], np.float32))
    with pytest.raises(ValueError, match="finite"):
        with np.errstate(over="ignore"):  # float64 beyond float32: inf after the conversion
            _core.quantize_int8(np.array([[1e39]]))
    with pytest.raises(ValueError, match=r"w must be 2-D"):
        _core.quantize_int8(np.ones(3, np.float32))
    with pytest.raises(TypeError, match="w"):
        _core.quantize_int8("weights")
    with pytest.raises(TypeError, match="q must be an int8 array"):
        _core.dequantize_int8(np.ones((2, 2), np.int16), np.ones(2, np.float32))
    with pytest.raises(ValueError, match="scale"):
        _core.dequantize_int8(np.ones((2, 2), np.int8), np.ones(3, np.float32))
