"""The compiled decoder (s2sext.Decoder: the C++ search, src/cpp/engine/) against the plain numpy reference
search over the model layer's step (tests/reference_search.py): the same greedy tokens, attention weights
and the same beam hypotheses and scores for every architecture, bf16 weights close to fp32,
concurrent calls equal to serial ones, and clear errors."""

import threading

import numpy as np
import pytest

import s2sext
from s2sext import Decoder, ModelFileError, Seq2Seq, _core
from s2sext.decoding import check_float32_range

import reference_range
import reference_search

VARIANTS = [
    (None, "luong", False),
    ("dot", "luong", False),
    ("scaled_dot", "luong", True),
    ("general", "luong", True),
    ("concat", "bahdanau", False),
    ("location", "bahdanau", False),
    ("general", "bahdanau", False),
    ("concat", "luong", False),
    ("location", "luong", True),
]


def peaked_model(attention, style, feeding, layers, bidirectional, seed=1, tgt_vocab=9):
    model = Seq2Seq(12, tgt_vocab, embed_size=6, hidden_size=8, num_layers=layers, bidirectional=bidirectional,
                    attention=attention, attention_style=style, input_feeding=feeding, seed=seed,
                    max_source_length=10)
    model.params["out.weight"] *= np.float32(3.0)  # varied, peaked distributions
    return model


def batch(seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(4, 12, (5, 7)), np.array([7, 1, 4, 6, 2])


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("attention,style,feeding", VARIANTS, ids=[f"{a}-{s}{'-if' if f else ''}" for a, s, f in VARIANTS])
def test_greedy_and_beam_equal_the_model_layer(attention, style, feeding, layers, bidirectional):
    model = peaked_model(attention, style, feeding, layers, bidirectional)
    src, lengths = batch()
    dec = model.compile()
    ids, weights = dec.greedy(src, lengths, max_length=8, min_length=1, return_attention=True)
    ref_ids, ref_weights = reference_search.greedy_search(model, src, lengths, max_length=8, min_length=1,
                                                          return_attention=True)
    np.testing.assert_array_equal(ids, ref_ids)
    # the weights are a softmax of float32 scores whose last bits differ (general: q . (W_a hs) here,
    # (q W_a) . hs in the reference); 1e-5 is a few float32 roundings of numbers at most 1
    np.testing.assert_allclose(weights, ref_weights, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(model.greedy(src, lengths, max_length=8, min_length=1), ids)
    ours = dec.hypotheses(src, lengths, beam_size=3, max_length=8, n_best=2, length_penalty=0.6,
                          return_attention=True)
    ref = reference_search.beam_search(model, src, lengths, beam_size=3, max_length=8, n_best=2, length_penalty=0.6)
    assert [[h["tokens"] for h in hyps] for hyps in model.beam_search(src, lengths, beam_size=3, max_length=8,
                                                                       n_best=2, length_penalty=0.6)] == \
        [[list(t) for t, *_ in hyps] for hyps in ours]
    for hyps_engine, hyps_model in zip(ours, ref):
        assert [list(t) for t, *_ in hyps_engine] == [h["tokens"] for h in hyps_model]
        for (_, score, log_prob, weights), h in zip(hyps_engine, hyps_model):
            np.testing.assert_allclose(weights, h["attention"], rtol=0, atol=1e-5)
            # both sum float32 logits' log-softmax in float64; the logits differ in the last bits
            # (the engine folds the embedding product into a table): 1e-5 relative covers that
            assert abs(score - h["score"]) <= 1e-5 * max(1.0, abs(h["score"]))
            assert abs(log_prob - h["log_prob"]) <= 1e-5 * max(1.0, abs(h["log_prob"]))


# The options OpenNMT-py's models need (docs/model.md): the query bias folded into the keys, the
# combine layer without tanh, the concatenating bridge with half-size encoder directions. Each
# with a seed whose greedy output differs between the rows (random models often repeat one token).
FEATURES = {
    "query-bias": (dict(attention="concat", attention_query_bias=True), 24),
    "query-bias-bahdanau": (dict(attention="concat", attention_style="bahdanau", attention_query_bias=True), 13),
    "no-tanh-if": (dict(attention="general", combine_activation="none", input_feeding=True), 5),
    "concat-bridge": (dict(attention="dot", bidirectional=True, bridge="concat", num_layers=2), 4),
    "concat-bridge-no-attention": (dict(attention=None, bidirectional=True, bridge="concat"), 6),
    "all": (dict(attention="concat", attention_query_bias=True, combine_activation="none", bidirectional=True,
                 bridge="concat", num_layers=2, input_feeding=True), 28),
}


@pytest.mark.parametrize("feature", list(FEATURES))
def test_features_greedy_and_beam_equal_the_model_layer(feature, tmp_path):
    options, seed = FEATURES[feature]
    options = {"num_layers": 1, "attention_style": "luong", "input_feeding": False, **options}
    model = Seq2Seq(12, 9, embed_size=6, hidden_size=8, seed=seed, **options)
    model.params["out.weight"] *= np.float32(3.0)  # varied, peaked distributions
    model.params["tgt_embed"] *= np.float32(2.0)
    if options.get("attention_query_bias"):
        model.params["attention.b_q"] *= np.float32(8.0)  # a bias that moves the scores
    src, lengths = batch()
    model.save(tmp_path / "m.s2s")
    for dec in (model.compile(), Decoder.load(tmp_path / "m.s2s")):  # Decoder.load: the file's version 2
        expected = model.greedy(src, lengths, max_length=8, min_length=1)
        np.testing.assert_array_equal(dec.greedy(src, lengths, max_length=8, min_length=1), expected)
        ours = dec.hypotheses(src, lengths, beam_size=3, max_length=8, min_length=1, n_best=2, length_penalty=0.6)
        ref = model.beam_search(src, lengths, beam_size=3, max_length=8, min_length=1, n_best=2, length_penalty=0.6)
        for hyps_engine, hyps_model in zip(ours, ref):
            assert [list(t) for t, _, _ in hyps_engine] == [h["tokens"] for h in hyps_model]
            for (_, score, _), h in zip(hyps_engine, hyps_model):
                # as in test_greedy_and_beam_equal_the_model_layer: float32 logits, last bits differ
                assert abs(score - h["score"]) <= 1e-5 * max(1.0, abs(h["score"]))
    assert len({tuple(row) for row in expected}) >= 3
    if options.get("attention_query_bias"):  # the bias matters: without it the scores move 100x past 1e-5
        scores = [h[1] for hyps in ours for h in hyps]
        model.unfreeze()  # (decoded above: the arrays are read-only while a decoder is kept)
        model.params["attention.b_q"][...] = 0
        ours = model.compile().hypotheses(src, lengths, beam_size=3, max_length=8, min_length=1, n_best=2,
                                          length_penalty=0.6)
        assert max(abs(a - h[1]) for a, h in zip(scores, (h for hyps in ours for h in hyps))) > 1e-3


def test_engine_config_checks_the_features():
    base = dict(src_vocab_size=10, tgt_vocab_size=10, embed_size=4, hidden_size=4, num_layers=1,
                bidirectional=False, max_source_length=5, attention="dot", attention_style="luong",
                input_feeding=False)
    for changes, match in [(dict(bridge="concat"), "bridge 'concat' needs bidirectional"),
                           (dict(bridge="concat", bidirectional=True, hidden_size=5), "even hidden_size"),
                           (dict(bridge="mlp"), "config 'bridge' is 'mlp', not 'linear' or 'concat'"),
                           (dict(combine_activation="none", attention=None), "combine_activation 'none' needs"),
                           (dict(combine_activation="sigmoid"), "config 'combine_activation' is 'sigmoid', not 'tanh' or 'none'"),
                           (dict(attention_query_bias=True), "attention_query_bias needs attention 'concat'")]:
        with pytest.raises(ValueError, match=match):
            s2sext._core.Engine({**base, **changes}, {}, "float32")


def test_beam_arrays_and_batch_one():
    model = peaked_model("dot", "luong", False, 1, False)
    src, lengths = batch(1)
    dec = model.compile()
    ids, scores = dec.beam(src, lengths, beam_size=4, max_length=6, n_best=3)
    assert ids.shape[:2] == (5, 3) and scores.shape == (5, 3)
    assert np.all(np.diff(scores, axis=1) <= 0)
    ids1, scores1 = dec.beam(src, lengths, beam_size=4, max_length=6)
    np.testing.assert_array_equal(ids1[:, : ids.shape[2]], ids[:, 0, : ids1.shape[1]])
    np.testing.assert_array_equal(scores1, scores[:, 0])
    for b in range(5):  # one input at a time gives the same as the batch
        single = dec.greedy(src[b:b + 1, : lengths[b]], max_length=8)
        full = dec.greedy(src, lengths, max_length=8)[b]
        np.testing.assert_array_equal(single[0], full[: single.shape[1]])


def test_bfloat16_weights_stay_close():
    model = peaked_model("general", "luong", True, 2, True)
    src, lengths = batch(2)
    f32 = model.compile("float32")
    bf16 = model.compile("bfloat16")
    assert bf16.dtype == "bfloat16"
    a = f32.hypotheses(src, lengths, beam_size=2, max_length=6)
    b = bf16.hypotheses(src, lengths, beam_size=2, max_length=6)
    # bf16 keeps 8 bits of mantissa (relative rounding <= 2**-9 per weight): log-probabilities of
    # these small models move by well under 5% of their size
    for x, y in zip(a, b):
        assert abs(x[0][2] - y[0][2]) <= 0.05 * abs(x[0][2]) + 0.05


def test_concurrent_calls_equal_serial_calls():
    model = peaked_model("concat", "bahdanau", False, 2, True)
    dec = model.compile()
    rng = np.random.default_rng(3)
    inputs = [(rng.integers(4, 12, (3, 6)), rng.integers(1, 7, 3)) for _ in range(8)]
    expected = [dec.greedy(s, l, max_length=7) for s, l in inputs]
    results = [None] * len(inputs)

    def work(i, serial):
        for _ in range(5):
            results[i] = dec.greedy(*inputs[i], max_length=7, serial=serial)

    threads = [threading.Thread(target=work, args=(i, i % 2 == 0)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)


def test_load_and_translate(tmp_path):
    model = Seq2Seq(list("abcde"), list("vwxyz"), embed_size=4, hidden_size=8, attention="dot", seed=0,
                    reverse_source=True)
    model.params["out.weight"] *= np.float32(3.0)
    path = tmp_path / "m.s2s"
    model.save(path)
    dec = Decoder.load(path)
    assert dec.translate(["abc", "edcba"], max_length=6) == model.translate(["abc", "edcba"], max_length=6)
    assert dec.translate(["abc"], beam=3, max_length=6) == model.translate(["abc"], beam=3, max_length=6)
    ours = dec.translate(["abc", "ed"], beam=3, n_best=2, max_length=6)
    ref = model.translate(["abc", "ed"], beam=3, n_best=2, max_length=6)
    assert [[t for t, _ in row] for row in ours] == [[t for t, _ in row] for row in ref]
    for row_ours, row_ref in zip(ours, ref):
        for (_, a), (_, b) in zip(row_ours, row_ref):
            assert abs(a - b) <= 1e-5 * max(1.0, abs(b))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ModelFileError):
        Decoder.load(path)


def test_errors_are_clear():
    model = peaked_model("location", "luong", False, 1, False)
    dec = model.compile()
    with pytest.raises(TypeError, match="src_ids must be an integer array"):
        dec.greedy(np.zeros((1, 3)))
    with pytest.raises(ValueError, match=r"src_ids must have shape \[B, S\]"):
        dec.greedy(np.zeros(3, np.int64))
    with pytest.raises(ValueError, match=r"src_ids must lie in \[0, 12\) \(the source vocabulary\); got min 12, max 12"):
        dec.greedy(np.full((1, 3), 12))
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, S=3\]; got min 0, max 0"):
        dec.greedy(np.full((1, 3), 5), np.array([0]))
    with pytest.raises(ValueError, match="location attention accepts at most max_source_length=10"):
        dec.greedy(np.full((1, 11), 5))
    with pytest.raises(ValueError, match=r"n_best \(3\) must not exceed beam_size \(2\)"):
        dec.beam(np.full((1, 3), 5), beam_size=2, n_best=3)
    with pytest.raises(ValueError, match="n_best must lie in"):  # the C++ engine checks on its own too
        dec._engine.beam(np.full((1, 3), 5), None, 2, 5, 0, 3, 0.0, False)
    with pytest.raises(ValueError, match=r"beam_size must lie in \[1, 65536\]"):
        dec._engine.beam(np.full((1, 3), 5), None, 2**62, 5, 0, 1, 0.0, False)
    with pytest.raises(ValueError, match="dtype must be 'float32', 'bfloat16' or 'int8', got 'float16'"):
        model.compile("float16")
    params = dict(model.params)
    del params["out.bias"]
    with pytest.raises(ValueError, match="parameter 'out.bias' is missing"):
        Decoder(model.config.as_dict(), params, model.src_vocab, model.tgt_vocab)
    params = dict(model.params)
    params["combine.weight"] = params["combine.weight"][:, :3]
    with pytest.raises(ValueError, match=r"parameter 'combine.weight' has shape \(8, 3\); expected \(8, 16\)"):
        Decoder(model.config.as_dict(), params, model.src_vocab, model.tgt_vocab)


def bf16_representable(params):
    """Each float32 rounded to bfloat16 (nearest even) and back: bf16 storage of these is exact."""
    out = {}
    for name, value in params.items():
        bits = value.astype(np.float32).view(np.uint32).astype(np.uint64)
        rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
        out[name] = rounded.astype(np.uint32).view(np.float32).reshape(value.shape)
    return out


@pytest.mark.parametrize("path", s2sext.cpu_info()["available_paths"])
@pytest.mark.parametrize("attention,style,feeding", [("dot", "luong", False), ("concat", "bahdanau", False),
                                                     ("general", "luong", True)])
def test_bfloat16_path_is_exact_on_bf16_representable_weights(attention, style, feeding, path):
    """With weights that bf16 stores exactly, the bf16 engine (its own GEMV and encoder recurrence)
    must give the model layer's tokens: where it widens the weights to float32 (every path but
    avx512_bf16) only float32 summation order differs. The native bf16 products (avx512_bf16) round
    each product's inputs to bf16 too, a relative change of at most 2**-9 per activation, which
    moves a score (a sum of log-probabilities) by a small fraction of that: 2**-10 of its size is
    allowed (it moves by at most about 2**-13 here). The greedy tokens must still be the model's; a
    beam hypothesis must be one of the model's, and may change rank only with one whose score is
    within twice that."""
    model = peaked_model(attention, style, feeding, 2, True, seed=5)
    for name, value in bf16_representable(model.params).items():
        model.params[name][...] = value
    src, lengths = batch(4)
    previous = s2sext.set_kernel_path(path)
    try:
        bf16 = model.compile("bfloat16")
        greedy = bf16.greedy(src, lengths, max_length=8)
        ours = bf16.hypotheses(src, lengths, beam_size=3, max_length=8, n_best=2)
    finally:
        s2sext.set_kernel_path(previous)
    np.testing.assert_array_equal(greedy, reference_search.greedy_search(model, src, lengths, max_length=8))
    ref = reference_search.beam_search(model, src, lengths, beam_size=3, max_length=8, n_best=3)
    for hyps_engine, hyps_model in zip(ours, ref):
        if path != "avx512_bf16":
            assert [list(t) for t, _, _ in hyps_engine] == [h["tokens"] for h in hyps_model[:2]]
            for (_, score, _), h in zip(hyps_engine, hyps_model):
                assert abs(score - h["score"]) <= 1e-5 * max(1.0, abs(h["score"]))
            continue
        model_scores = {tuple(h["tokens"]): h["score"] for h in hyps_model}
        for rank, (tokens, score, _) in enumerate(hyps_engine):
            assert tuple(tokens) in model_scores, (list(tokens), hyps_model)
            model_score = model_scores[tuple(tokens)]
            tol = 2.0**-10 * max(1.0, abs(model_score))
            assert abs(score - model_score) <= tol
            assert abs(hyps_model[rank]["score"] - model_score) <= 2 * tol


def scaled(model, scale, prefixes=None, seed=0):
    """Parameters redrawn as N(0, scale^2) (those whose names start with one of prefixes, or all)."""
    rng = np.random.default_rng(seed)
    for name, value in model.params.items():
        if prefixes is None or name.startswith(prefixes):
            value[...] = (rng.standard_normal(value.shape) * scale).astype(np.float32)
    return model


@pytest.mark.parametrize("attention,style,feeding", VARIANTS, ids=[f"{a}-{s}{'-if' if f else ''}" for a, s, f in VARIANTS])
def test_float32_overflow_is_refused_alike(attention, style, feeding):
    """With weights of 1e30 the products overflow float32, and whether a sum became inf or NaN
    depended on its order and fusion: the model layer's kernels and the compiled decoder's table of
    embedding products (and the batch size) differ there, so Seq2Seq.greedy and Decoder.greedy
    emitted different tokens. Both now refuse such a model, with the same message."""
    model = scaled(peaked_model(attention, style, feeding, 2, True), 1e30)
    src, lengths = batch()
    message = r"the model's encoder.l0 gates can reach [0-9.e+]+ in absolute value .* past float32's range"
    for decode in (lambda: model.greedy(src, lengths), lambda: model.beam_search(src, lengths),
                   lambda: model.compile()):
        with pytest.raises(ValueError, match=message):
            decode()
    model = peaked_model(attention, style, feeding, 1, False)
    model.params["decoder.l0.w_hh"][...] = 1e38  # finite, but 8 of them summed are not
    with pytest.raises(ValueError, match=r"decoder.l0 gates can reach .*decoder.l0.w_hh"):
        model.greedy(src, lengths)
    with pytest.raises(ValueError, match=r"decoder.l0 gates can reach .*decoder.l0.w_hh"):
        model.compile()
    model.params["decoder.l0.w_hh"][...] = np.nan
    with pytest.raises(ValueError, match=r"can reach nan .* not finite"):
        model.compile()


def range_verdicts(model, dtype="float32"):
    """The messages of the numpy reference of the rule (tests/reference_range.py) and of the
    compiled decoder's check (C++, through the Decoder and through decoding.check_float32_range,
    which must agree), None where a check lets the model through."""
    try:
        reference_range.check_float32_range(model.config.as_dict(), model.params)
        python = None
    except ValueError as e:
        python = str(e)
    try:
        model.compile(dtype)
        cpp = None
    except ValueError as e:
        cpp = str(e).removeprefix("Decoder: ")
    try:
        check_float32_range(model.config.as_dict(), model.params)
        assert cpp is None
    except ValueError as e:
        assert str(e) == cpp
    return python, cpp


RANGE_MODELS = [(f"{a}-{s}{'-if' if f else ''}-{'bi' if bi else 'uni'}", dict(
    attention=a, attention_style=s, input_feeding=f, bidirectional=bi, num_layers=2)) for a, s, f in VARIANTS
    for bi in (False, True)] + [(name, {"num_layers": 1, **options}) for name, (options, _) in FEATURES.items()]


@pytest.mark.parametrize("options", [o for _, o in RANGE_MODELS], ids=[n for n, _ in RANGE_MODELS])
def test_cpp_range_check_gives_the_python_verdict(options):
    """The compiled decoder's bound (engine/range_check.cpp) is the numpy reference's, computed
    independently: the same verdict and message for every parameter set past, near and
    within the range alone, and for whole models scaled so that products of two weights cross it."""
    model = Seq2Seq(12, 9, embed_size=6, hidden_size=8, max_source_length=10, seed=3, **options)
    original = {name: value.copy() for name, value in model.params.items()}
    refused = passed = 0
    cases = [(name, value) for name in original for value in (1e36, 3e37, 2e38, np.inf, np.nan)]
    cases += [(None, scale) for scale in (1e17, 1e18, 3e18, 1e19, 1e20)]
    for name, value in cases:
        for key, array in original.items():
            model.params[key][...] = array
        if name is None:
            scaled(model, value)
        else:
            model.params[name][...] = np.float32(value)
        python, cpp = range_verdicts(model)
        assert cpp == python, f"{name} = {value}"
        refused += python is not None
        passed += python is None
    assert refused and passed  # both verdicts occur
    python, cpp = range_verdicts(model, "bfloat16")  # bf16 storage: bounded from the float32 weights
    assert cpp == python


def test_cpp_translator_refuses_a_model_file_past_float32(tmp_path):
    """The C++ API (s2sext::Translator::load, over the same engine) refused nothing here: it
    decoded a model with weights of 1e30 silently. It now refuses the file with the engine's
    message; the file itself is valid, and Seq2Seq.load reads it (to inspect or retrain)."""
    path = tmp_path / "m.s2s"
    model = peaked_model("concat", "bahdanau", False, 2, True)
    model.save(path)
    _core.check_model_file(str(path))
    scaled(model, 1e30).save(path)
    with pytest.raises(ValueError, match=r"model file .*: the model's encoder.l0 gates can reach .* past float32's"):
        _core.check_model_file(str(path))
    Seq2Seq.load(path)
    with pytest.raises(ValueError, match=r"the model's encoder.l0 gates can reach"):
        Decoder.load(path)


@pytest.mark.parametrize("attention,style,feeding", VARIANTS, ids=[f"{a}-{s}{'-if' if f else ''}" for a, s, f in VARIANTS])
def test_large_weights_within_float32_decode_alike(attention, style, feeding):
    """Output weights of 1e30 give logits of about 1e31: large, but no sum can overflow (the
    bound check lets them through) and both paths choose the same tokens."""
    model = scaled(peaked_model(attention, style, feeding, 2, True), 1e30, ("out.",))
    src, lengths = batch()
    np.testing.assert_array_equal(model.compile().greedy(src, lengths, max_length=8),
                                  reference_search.greedy_search(model, src, lengths, max_length=8))
    assert range_verdicts(model) == (None, None)
    assert range_verdicts(model, "bfloat16") == (None, None)


def test_new_arguments_are_checked():
    model = peaked_model("dot", "luong", False, 1, False)
    dec = model.compile()
    src = np.full((1, 3), 5)
    for bad in ("yes", 1, None):
        with pytest.raises(TypeError, match="return_attention must be a bool"):
            dec.greedy(src, return_attention=bad)
        with pytest.raises(TypeError, match="return_attention must be a bool"):
            dec.hypotheses(src, return_attention=bad)
    params = dict(model.params)
    del params["out.bias"]
    with pytest.raises(ValueError, match="parameter 'out.bias' is missing"):
        check_float32_range(model.config.as_dict(), params)
    params = {**model.params, "out.bias": np.zeros(3, np.float32)}
    with pytest.raises(ValueError, match=r"parameter 'out.bias' has shape \(3\); expected \(9\)"):
        check_float32_range(model.config.as_dict(), params)
    with pytest.raises(ValueError, match="config lacks 'hidden_size'"):
        check_float32_range({k: v for k, v in model.config.as_dict().items() if k != "hidden_size"}, model.params)
