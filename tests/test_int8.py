"""int8 weights in the compiled decoder (runtime/matrix.h, the kernels' int8 section): the row
quantizer and the int32 product of every kernel path against exact numpy references (integer sums
are exact, so every path must give the same bits), matmul's int8 branch against the numpy formula,
and the int8 Decoder (greedy, beam, generate, the C++ Translator, bad dtypes)."""

import numpy as np
import pytest

import s2sext
from s2sext import Decoder, Seq2Seq, _core

from reference import with_kernel_path

PATHS = list(s2sext.cpu_info()["available_paths"])
N_SIZES = [1, 3, 13, 255]
K_SIZES = [1, 7, 64, 255, 513]
M_SIZES = list(range(1, 10)) + [32]


def _random_int8(rng, shape):
    return rng.integers(-127, 128, shape).astype(np.int8)


@pytest.mark.parametrize("path", PATHS)
def test_gemm_i8_is_exact_on_every_path(path):
    rng = np.random.default_rng(0)
    for K in K_SIZES:
        for N in N_SIZES:
            for M in M_SIZES:
                q_x, q_w = _random_int8(rng, (M, K)), _random_int8(rng, (N, K))
                want = q_x.astype(np.int64) @ q_w.astype(np.int64).T  # exact
                got = with_kernel_path(path, _core.int8_gemm, q_x, q_w)
                assert got.dtype == np.int32
                np.testing.assert_array_equal(got, want, err_msg=f"{path} M={M} N={N} K={K}")


@pytest.mark.parametrize("path", PATHS)
def test_gemm_i8_extremes(path):
    """All +-127 (the largest sums, and on VNNI the largest shifted activations x + 128 = 255 and
    smallest = 1) over the longest rows the engine allows."""
    K = 65536 - 64
    for sx, sw in ((127, 127), (-127, 127), (-127, -127)):
        q_x, q_w = np.full((3, K), sx, np.int8), np.full((5, K), sw, np.int8)
        got = with_kernel_path(path, _core.int8_gemm, q_x, q_w)
        np.testing.assert_array_equal(got, np.full((3, 5), sx * sw * K, np.int64))


def _rows_to_quantize(rng, M, K):
    x = rng.standard_normal((M, K)).astype(np.float32) * np.float32(3.0)
    x[0, :] = 0.0  # a zero row: scale 0, zeros
    if M > 1:
        # ties: values at exactly k + 0.5 quanta (max 127 -> scale 1), which round half to even
        x[1, :] = (np.arange(K) % 7 - 3).astype(np.float32) + np.float32(0.5)
        x[1, 0] = 127.0
    if M > 2:
        x[2, :] *= np.float32(1e-30)  # tiny values
    return x


@pytest.mark.parametrize("path", PATHS)
def test_row_quantizer_is_the_rule_on_every_path(path):
    rng = np.random.default_rng(1)
    for K in K_SIZES:
        for M in (1, 3, 9):
            x = _rows_to_quantize(rng, M, K)
            q, scale = with_kernel_path(path, _core.int8_quantize_rows, x)
            rule_q, rule_scale = _core.quantize_int8(x)
            np.testing.assert_array_equal(scale, rule_scale)
            np.testing.assert_array_equal(q, rule_q, err_msg=f"{path} M={M} K={K}")
            # and the rule as documented: scale = max|x| / 127 in float32, round half to even
            np.testing.assert_array_equal(scale, np.abs(x).max(axis=1) / np.float32(127))
            safe = np.where(scale > 0, scale, np.float32(1))[:, None]
            want = np.where(scale[:, None] > 0, np.clip(np.rint(x / safe), -127, 127), 0).astype(np.int8)
            np.testing.assert_array_equal(q, want)


def _matmul_reference(w, x, y=None):
    """The int8 product by its formula, in numpy: rows of both quantized by the rule, int sums
    exact, y = float32(acc) * (x_scale * w_scale) (+ y)."""
    q_w, s_w = _core.quantize_int8(w)
    q_x, s_x = _core.quantize_int8(x)
    acc = (q_x.astype(np.int64) @ q_w.astype(np.int64).T).astype(np.float32)
    out = acc * (s_x[:, None] * s_w[None, :])
    return out if y is None else y + out


@pytest.mark.parametrize("path", PATHS)
def test_matmul_int8_equals_its_formula_bit_for_bit(path):
    rng = np.random.default_rng(2)
    for K in (1, 7, 255, 513):
        for N in (1, 13, 255):
            for M in (1, 2, 5, 9, 32):
                w = rng.standard_normal((N, K)).astype(np.float32)
                x = rng.standard_normal((M, K)).astype(np.float32)
                y0 = rng.standard_normal((M, N)).astype(np.float32)
                np.testing.assert_array_equal(with_kernel_path(path, _core.int8_matmul, w, x), _matmul_reference(w, x))
                np.testing.assert_array_equal(with_kernel_path(path, _core.int8_matmul, w, x, y0),
                                              _matmul_reference(w, x, y0))


def test_matmul_int8_threads_give_the_same_bits():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((2048, 512)).astype(np.float32)
    x = rng.standard_normal((5, 512)).astype(np.float32)
    previous = s2sext.get_num_threads()
    try:
        s2sext.set_num_threads(1)
        one = _core.int8_matmul(w, x)
        s2sext.set_num_threads(max(2, previous))
        many = _core.int8_matmul(w, x)
    finally:
        s2sext.set_num_threads(previous)
    np.testing.assert_array_equal(one, many)
    np.testing.assert_array_equal(one, _matmul_reference(w, x))


def test_int8_hooks_check_their_arguments():
    with pytest.raises(TypeError, match="q_x must be an int8 array"):
        _core.int8_gemm(np.zeros((2, 3), np.int16), np.zeros((2, 3), np.int8))
    with pytest.raises(ValueError, match=r"q_w must have K=3 columns \(those of q_x\)"):
        _core.int8_gemm(np.zeros((2, 3), np.int8), np.zeros((2, 4), np.int8))
    with pytest.raises(ValueError, match="q_x must lie in"):
        _core.int8_gemm(np.full((2, 3), -128, np.int8), np.zeros((2, 3), np.int8))
    with pytest.raises(ValueError, match="x must be finite"):
        _core.int8_quantize_rows(np.array([[1.0, np.nan]], np.float32))


# ---- the int8 engine against a numpy reference of the same arithmetic ----------------------------

def _q_rows(x):
    """Rows of x quantized by the rule: (int64 q, float32 scale)."""
    q, s = _core.quantize_int8(np.ascontiguousarray(x, np.float32))
    return q.astype(np.int64), s


class _Int8Matrix:
    """A weight as the engine stores it: its whole rows quantized, columns [c0, c1) kept."""

    def __init__(self, w, c0=0, c1=None):
        q, self.scale = _q_rows(w)
        self.q = q[:, c0:c1]

    def __call__(self, x):
        """The engine's int8 product: x's rows quantized, sums exact, then the scales in float32."""
        q_x, s_x = _q_rows(x)
        return (q_x @ self.q.T).astype(np.float32) * (s_x[:, None] * self.scale[None, :])


def _dequantized(w):
    return _core.dequantize_int8(*_core.quantize_int8(np.ascontiguousarray(w, np.float32)))


def _sigmoid(x):
    return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(np.float32)


def _lstm_gates(gates, c):
    H = c.shape[1]
    i, f = _sigmoid(gates[:, :H]), _sigmoid(gates[:, H:2 * H])
    g, o = np.tanh(gates[:, 2 * H:3 * H]).astype(np.float32), _sigmoid(gates[:, 3 * H:])
    c_new = f * c + i * g
    return o * np.tanh(c_new).astype(np.float32), c_new


def reference_int8_greedy(model, src, max_length):
    """Greedy decoding of one unidirectional Luong model with dot attention (input feeding or not),
    computed as the int8 engine computes: the matmul matrices by _Int8Matrix, the embeddings, and
    the projected embedding table from the dequantized values. Returns (tokens, log-probabilities
    of the chosen tokens)."""
    p, cfg = model.params, model.config
    H, E, L, V = cfg.hidden_size, cfg.embed_size, cfg.num_layers, p["out.weight"].shape[0]
    S = src.shape[0]
    x = _dequantized(p["src_embed"])[src]  # [S, E]
    finals = []
    for l in range(L):
        w_ih, w_hh, b = _Int8Matrix(p[f"encoder.l{l}.w_ih"]), _Int8Matrix(p[f"encoder.l{l}.w_hh"]), p[f"encoder.l{l}.b"]
        x_proj = w_ih(x)
        h, c = np.zeros((1, H), np.float32), np.zeros((1, H), np.float32)
        out = []
        for t in range(S):
            h, c = _lstm_gates((x_proj[t:t + 1] + w_hh(h)) + b, c)
            out.append(h[0])
        x = np.array(out)
        finals.append((h, c))
    memory = x
    state = [list(f) for f in finals]
    G = 4 * H
    w0 = p["decoder.l0.w_ih"]
    projected = _dequantized(p["tgt_embed"]) @ _dequantized(w0)[:, :E].T + p["decoder.l0.b"]
    assert V * G * 4 <= 16 << 20  # the engine keeps the table for these sizes (engine/weights.cpp)
    w0_rest = _Int8Matrix(w0, E) if w0.shape[1] > E else None
    dec_w = [(None if l == 0 else _Int8Matrix(p[f"decoder.l{l}.w_ih"]), _Int8Matrix(p[f"decoder.l{l}.w_hh"]),
              p[f"decoder.l{l}.b"]) for l in range(L)]
    combine, out_w = _Int8Matrix(p["combine.weight"]), _Int8Matrix(p["out.weight"])
    feed = np.zeros((1, H), np.float32)
    token, tokens, scores = 1, [], []  # <sos>
    for _ in range(max_length):
        for l, (w_ih, w_hh, b) in enumerate(dec_w):
            if l == 0:
                gates = projected[token][None, :].astype(np.float32)
                if w0_rest is not None:
                    gates = gates + w0_rest(feed)
                gates = gates + w_hh(state[0][0])
            else:
                gates = (w_ih(state[l - 1][0]) + w_hh(state[l][0])) + b
            state[l] = list(_lstm_gates(gates, state[l][1]))
        h_top = state[-1][0]
        e = memory.astype(np.float64) @ h_top[0].astype(np.float64)
        a = np.exp(e - e.max())
        a /= a.sum()
        context = (a @ memory.astype(np.float64)).astype(np.float32)[None, :]
        o = np.tanh(combine(np.concatenate([context, h_top], axis=1)) + p["combine.bias"]).astype(np.float32)
        feed = o
        logits = (out_w(o) + p["out.bias"])[0].astype(np.float64)
        log_probs = logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())
        token = int(np.argmax(logits))
        tokens.append(token)
        scores.append(log_probs[token])
        if token == 2:  # <eos>
            break
    return tokens, np.array(scores)


@pytest.mark.parametrize("layers,feeding", [(1, False), (2, True)])
def test_int8_decoder_equals_the_numpy_reference(layers, feeding, kernel_path):
    model = Seq2Seq(12, 40, embed_size=6, hidden_size=24, num_layers=layers, attention="dot",
                    input_feeding=feeding, seed=4)
    model.params["out.weight"] *= np.float32(3.0)
    model.params["out.bias"][2] = -3.0  # <eos> later: several steps per input
    dec = model.compile("int8")
    f32 = model.compile("float32")
    rng = np.random.default_rng(5)
    for _ in range(4):
        src = rng.integers(4, 12, 9)
        ref_tokens, ref_scores = reference_int8_greedy(model, src, max_length=8)
        assert len(ref_tokens) > 2
        (hyp,) = dec.generate(src[None, :], max_length=8, return_token_scores=True)[0]
        assert list(hyp["tokens"]) == ref_tokens
        # The int sums are exact on both sides; only the float32 parts differ (exp and tanh
        # approximations of about 1 ulp, summation orders), relative errors near 1e-7 that reach
        # the log-probabilities as such (measured: at most 6e-8). 1e-5 leaves room for that and is
        # a hundred times below what int8 changes against float32 here (about 1e-3, checked below),
        # so a wrong scale, a lost column or float32 products instead of int8 ones fail.
        np.testing.assert_allclose(hyp["token_scores"], ref_scores, rtol=0, atol=1e-5)
        (full,) = f32.generate(src[None, :], max_length=8, return_token_scores=True)[0]
        n = min(len(full["token_scores"]), len(ref_scores))
        assert np.abs(full["token_scores"][:n] - ref_scores[:n]).max() > 1e-4


ARCHITECTURES = [(None, "luong", False, False), ("dot", "luong", True, True), ("general", "luong", True, False),
                 ("concat", "bahdanau", False, True), ("location", "luong", True, True),
                 ("scaled_dot", "luong", False, False)]


@pytest.mark.parametrize("attention,style,feeding,bidirectional", ARCHITECTURES,
                         ids=[f"{a}-{s}{'-if' if f else ''}{'-bi' if b else ''}" for a, s, f, b in ARCHITECTURES])
def test_int8_greedy_beam_and_generate_stay_close_to_float32(attention, style, feeding, bidirectional):
    model = Seq2Seq(12, 9, embed_size=6, hidden_size=8, num_layers=2, bidirectional=bidirectional,
                    attention=attention, attention_style=style, input_feeding=feeding, seed=1,
                    max_source_length=10)
    model.params["out.weight"] *= np.float32(3.0)
    rng = np.random.default_rng(0)
    src, lengths = rng.integers(4, 12, (5, 7)), np.array([7, 1, 4, 6, 2])
    f32, int8 = model.compile("float32"), model.compile("int8")
    assert int8.dtype == "int8"
    ids = int8.greedy(src, lengths, max_length=8)
    assert ids.shape[0] == 5 and ids.dtype == np.int64
    a = f32.hypotheses(src, lengths, beam_size=3, max_length=6, n_best=2)
    b = int8.hypotheses(src, lengths, beam_size=3, max_length=6, n_best=2)
    # int8 rounds each weight and activation to 1/254 of its row's largest value: the
    # log-probabilities of these small models move by well under 5% of their size (as bf16's test)
    for x, y in zip(a, b):
        assert len(y) == 2 and y[0][1] >= y[1][1]
        assert abs(x[0][2] - y[0][2]) <= 0.05 * abs(x[0][2]) + 0.05
    found = int8.generate(src, lengths, max_length=8, return_token_scores=True)
    for row, hyps in zip(ids, found):
        (h,) = hyps
        np.testing.assert_array_equal(h["tokens"], row[: len(h["tokens"])])
        assert abs(h["token_scores"].sum() - h["log_prob"]) <= 1e-9 * max(1.0, abs(h["log_prob"]))
    beam_ids, scores = int8.beam(src, lengths, beam_size=3, max_length=6)
    for row, hyps in zip(beam_ids, b):
        assert list(row[: len(hyps[0][0])]) == list(hyps[0][0])
    # the same bits whatever the batch: one input at a time decodes as in the batch
    for i in range(5):
        single = int8.greedy(src[i:i + 1, : lengths[i]], max_length=8)
        np.testing.assert_array_equal(single[0], ids[i][: single.shape[1]])


def test_int8_decoder_load_and_bad_dtypes(tmp_path):
    model = Seq2Seq(list("abcde"), list("vwxyz"), embed_size=4, hidden_size=8, attention="dot", seed=0)
    model.params["out.weight"] *= np.float32(3.0)
    path = tmp_path / "m.s2s"
    model.save(path)
    loaded = Decoder.load(path, dtype="int8")
    assert loaded.dtype == "int8"
    assert loaded.translate(["abc", "edcba"], max_length=6) == model.compile("int8").translate(["abc", "edcba"],
                                                                                             max_length=6)
    for bad in ("int4", "INT8", ""):
        with pytest.raises(ValueError, match=f"dtype must be 'float32', 'bfloat16' or 'int8', got '{bad}'"):
            Decoder.load(path, dtype=bad)
    with pytest.raises(ValueError, match="dtype must be 'float32', 'bfloat16' or 'int8', got 'int4'"):
        _core.Engine(model.config.as_dict(), model.params, "int4")


def test_int8_large_weights_within_float32_stay_finite():
    """Output weights of 1e30 (logits near 1e31) pass the float32 range check; their int8 values are
    at most twice as large (range_check.h), so the int8 decode stays finite and, the outputs being
    this peaked, chooses the float32 decoder's tokens."""
    model = Seq2Seq(12, 9, embed_size=6, hidden_size=8, num_layers=2, bidirectional=True, attention="general",
                    input_feeding=True, seed=1)
    rng = np.random.default_rng(0)
    model.params["out.weight"][...] = (rng.standard_normal(model.params["out.weight"].shape) * 1e30).astype(np.float32)
    src, lengths = rng.integers(4, 12, (5, 7)), np.array([7, 1, 4, 6, 2])
    int8 = model.compile("int8")
    found = int8.generate(src, lengths, max_length=6, return_token_scores=True)
    for (h,) in found:
        assert np.all(np.isfinite(h["token_scores"])) and np.isfinite(h["score"])
    np.testing.assert_array_equal(int8.greedy(src, lengths, max_length=6),
                                  model.compile("float32").greedy(src, lengths, max_length=6))


def test_int8_file_and_int8_engine_agree_bit_for_bit(tmp_path):
    """An int8 model file (Seq2Seq.save(dtype="int8") / s2sext quantize) holds the rule's fixed
    point, so the int8 engine built from the file (which dequantizes then quantizes again) runs on
    the very bytes the engine quantizes from the original float32 model: every output equals,
    token scores and attention included. The C++ Translator reads the same file alike."""
    model = Seq2Seq(list("abcdefg"), list("tuvwxyz"), embed_size=5, hidden_size=7, attention="general",
                    bidirectional=True, seed=3)
    rng = np.random.default_rng(3)
    for name in model.params:  # spread the weights so that rows have different scales
        model.params[name] *= np.float32(rng.uniform(0.5, 3.0))
    path = tmp_path / "m8.s2s"
    model.save(path, dtype="int8")
    from_file = Decoder.load(path, dtype="int8")
    from_model = model.compile("int8")
    src = rng.integers(4, 11, size=(4, 13))  # ids past the four specials; V = 4 + 7
    lengths = np.array([3, 13, 1, 8])
    for kwargs in (dict(beam_size=1), dict(beam_size=3, n_best=2)):
        a = from_file.generate(src, lengths, max_length=9, return_attention=True, return_token_scores=True, **kwargs)
        b = from_model.generate(src, lengths, max_length=9, return_attention=True, return_token_scores=True, **kwargs)
        assert len(a) == len(b) == 4
        for hyps_a, hyps_b in zip(a, b):
            assert len(hyps_a) == len(hyps_b)
            for ha, hb in zip(hyps_a, hyps_b):
                assert ha.keys() == hb.keys()
                for key in ha:
                    assert np.array_equal(ha[key], hb[key]), key
    texts = ["abc", "gfedcba", "dd"]
    assert Decoder.load(path, dtype="float32").translate(texts, max_length=9) == \
        Seq2Seq.load(path).compile("float32").translate(texts, max_length=9)
