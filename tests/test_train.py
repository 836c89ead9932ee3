"""Training pieces: teacher-forcing schedules, scheduled-sampling statistics, Adam/SGD and clipping
against torch.optim, save/load round trips and refused files, and a short training run that learns."""

import math

import numpy as np
import pytest
import torch

from s2sext import ModelFileError, Seq2Seq
from s2sext.data import encode_pairs, build_vocabs, make_task, split_pairs
from s2sext import _core
from s2sext.train import SGD, Adam, TeacherForcingSchedule, clip_grad_norm, clip_scale, evaluate, grad_norm, train


def test_schedule_formulas():
    lin = TeacherForcingSchedule.parse("linear:c=0.01,floor=0.3")
    assert [lin(i) for i in (0, 10, 50, 1000)] == pytest.approx([1.0, 0.9, 0.5, 0.3])
    exp = TeacherForcingSchedule.parse("exponential:k=0.99,floor=0.1")
    assert exp(0) == 1.0 and exp(10) == pytest.approx(0.99**10) and exp(10**6) == 0.1
    sig = TeacherForcingSchedule.parse("inverse_sigmoid:k=100")
    assert sig(0) == pytest.approx(100 / 101) and sig(500) == pytest.approx(100 / (100 + math.exp(5)))
    assert sig(10**9) == 0.0
    assert TeacherForcingSchedule.parse("0.75")(123) == 0.75
    assert TeacherForcingSchedule.parse("constant:0.5")(0) == 0.5
    # monotone non-increasing
    for s in (lin, exp, sig):
        values = [s(i) for i in range(0, 2000, 7)]
        assert all(a >= b for a, b in zip(values, values[1:]))


@pytest.mark.parametrize("text,message", [
    ("cosine:k=1", "must be one of"),
    ("linear:floor=0.1", "linear schedule needs c"),
    ("exponential:k=1.5", "needs 0 < k < 1"),
    ("inverse_sigmoid:k=0.5", "needs k >= 1"),
    ("constant:2", "must lie in"),
    ("linear:c=abc", "must be a number"),
    ("linear:q=1", "unknown schedule parameter"),
])
def test_schedule_errors(text, message):
    with pytest.raises(ValueError, match=message):
        TeacherForcingSchedule.parse(text)


@pytest.mark.parametrize("text, name", [
    ("linear:c=nan", "c"),  # once trained with teacher forcing 0: the NaN eps_i was clamped to the floor
    ("linear:c=inf,floor=0.5", "c"),
    ("linear:c=0.1,k=nan", "k"),
    ("inverse_sigmoid:k=nan", "k"),
    ("inverse_sigmoid:k=inf", "k"),
    ("exponential:k=nan", "k"),
    ("linear:c=0.1,floor=nan", "floor"),
    ("constant:inf", "k"),
])
def test_schedule_parameters_must_be_finite(text, name):
    with pytest.raises(ValueError, match=rf"schedule parameter {name} must be a finite number; got {name}="):
        TeacherForcingSchedule.parse(text)


def test_schedule_constructor_checks_its_parameters():
    with pytest.raises(ValueError, match="schedule parameter c must be a finite number; got c=nan"):
        TeacherForcingSchedule("linear", c=float("nan"))
    with pytest.raises(ValueError, match="schedule parameter k must be a finite number; got k=inf"):
        TeacherForcingSchedule("inverse_sigmoid", k=np.float64("inf"))
    with pytest.raises(TypeError, match="schedule parameter c must be a number; got '0.1'"):
        TeacherForcingSchedule("linear", c="0.1")
    with pytest.raises(TypeError, match="schedule parameter floor must be a number; got True"):
        TeacherForcingSchedule("linear", c=0.1, floor=True)
    assert TeacherForcingSchedule("linear", k=np.float32(0.5), c=1, floor=0)(0) == 0.5


def tiny_model(**kw):
    return Seq2Seq(10, 10, embed_size=4, hidden_size=6, seed=0, **kw)


def test_scheduled_sampling_feeds_truth_at_the_scheduled_rate():
    """Each (row, step > 0) input is the truth with probability eps: over n = B*(T-1)*batches draws the
    observed rate is within 5 binomial standard deviations of eps (a false failure has probability
    below 1e-6)."""
    model = tiny_model(attention="dot")
    rng = np.random.default_rng(0)
    B, T = 32, 8
    src = rng.integers(4, 10, (B, 5))
    tgt = rng.integers(4, 10, (B, T))
    lengths = np.full(B, T)
    for eps in (0.0, 0.3, 0.8):
        fed = [model.loss_and_grads(src, np.full(B, 5), tgt, tgt, lengths, feed_prob=eps, rng=rng,
                                    need_grads=False)[2]["fed_truth"] for _ in range(20)]
        n = B * (T - 1) * 20
        sd = math.sqrt(eps * (1 - eps) / n)
        assert abs(np.mean(fed) - eps) <= 5 * sd + 1e-12
    # eps = 0 feeds the model's own argmax: replaying those inputs with teacher forcing gives the same loss
    loss, _, stats = model.loss_and_grads(src, np.full(B, 5), tgt, tgt, lengths, feed_prob=0.0, rng=rng)
    replay, _, _ = model.loss_and_grads(src, np.full(B, 5), stats["decoder_inputs"], tgt, lengths,
                                        force_step_path=True)
    assert loss == pytest.approx(replay, rel=1e-6)
    assert np.all(stats["decoder_inputs"][:, 1:] == model.greedy(src, max_length=T)[:, : T - 1])


def test_adam_sgd_and_clipping_match_torch():
    rng = np.random.default_rng(1)
    params = {"a": rng.standard_normal((3, 4)).astype(np.float32), "b": rng.standard_normal(5).astype(np.float32)}
    tparams = [torch.tensor(params["a"], requires_grad=True), torch.tensor(params["b"], requires_grad=True)]
    topt = torch.optim.Adam(tparams, lr=0.01)
    opt = Adam(params, lr=0.01)
    fused_params = {k: v.copy() for k, v in params.items()}
    fused = Adam(fused_params, lr=0.01)  # clipping passed as a scale into the update
    for step in range(5):
        grads = {"a": rng.standard_normal((3, 4)).astype(np.float32) * 10,
                 "b": rng.standard_normal(5).astype(np.float32) * 10}
        for t, g in zip(tparams, grads.values()):
            t.grad = torch.tensor(g)
        fused.step(grads, scale=clip_scale(grad_norm(grads), 3.0))
        tnorm = torch.nn.utils.clip_grad_norm_(tparams, 3.0)
        norm = clip_grad_norm(grads, 3.0)
        assert norm == pytest.approx(float(tnorm), rel=1e-5)
        for t, g in zip(tparams, grads.values()):
            np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-5, atol=1e-7)
        topt.step()
        opt.step(grads)
        for t, p, pf in zip(tparams, params.values(), fused_params.values()):
            # float32 updates: a few ulps of |p| per step
            np.testing.assert_allclose(p, t.detach().numpy(), rtol=2e-6, atol=1e-6)
            np.testing.assert_allclose(pf, t.detach().numpy(), rtol=2e-6, atol=1e-6)
    p = {"w": np.ones(3, np.float32)}
    sgd = SGD(p, lr=0.5, momentum=0.9)
    sgd.step({"w": np.ones(3, np.float32)})
    sgd.step({"w": np.ones(3, np.float32)})
    np.testing.assert_allclose(p["w"], 1 - 0.5 * 1 - 0.5 * 1.9)


def test_save_load_round_trip_and_refused_files(tmp_path):
    model = Seq2Seq(list("abcde"), list("xyz"), embed_size=4, hidden_size=6, num_layers=2, bidirectional=True,
                    attention="concat", attention_style="bahdanau", seed=3, reverse_source=True,
                    tgt_tokenizer="word")
    path = tmp_path / "m.s2s"
    model.save(path)
    loaded = Seq2Seq.load(path)
    assert loaded.config == model.config
    assert loaded.src_vocab == model.src_vocab and loaded.tgt_vocab == model.tgt_vocab
    assert list(loaded.params) == list(model.params)
    for name in model.params:
        assert loaded.params[name].dtype == np.float32
        np.testing.assert_array_equal(loaded.params[name], model.params[name])
    assert loaded.translate(["abc", "eda"]) == model.translate(["abc", "eda"])
    data = path.read_bytes()
    # truncated
    (tmp_path / "cut.s2s").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated"):
        Seq2Seq.load(tmp_path / "cut.s2s")
    # one flipped byte in the weights
    bad = bytearray(data)
    bad[len(data) - 100] ^= 0x40
    (tmp_path / "flip.s2s").write_bytes(bytes(bad))
    with pytest.raises(ModelFileError, match="corrupted"):
        Seq2Seq.load(tmp_path / "flip.s2s")
    # foreign
    (tmp_path / "x.s2s").write_text("source\ttarget\n")
    with pytest.raises(ModelFileError, match="not an s2sext model file"):
        Seq2Seq.load(tmp_path / "x.s2s")
    # a valid container that is not a Seq2Seq, or misses a parameter
    from s2sext.serialize import write_model_file

    write_model_file(tmp_path / "other.s2s", {"kind": "something-else"}, {})
    with pytest.raises(ModelFileError, match="something-else"):
        Seq2Seq.load(tmp_path / "other.s2s")
    header = model.file_header()
    tensors = dict(model.params)
    del tensors["combine.bias"]
    write_model_file(tmp_path / "missing.s2s", header, tensors)
    with pytest.raises(ModelFileError, match="combine.bias"):
        Seq2Seq.load(tmp_path / "missing.s2s")


def test_short_training_run_learns_to_reverse(tmp_path):
    pairs = make_task("reverse", 1500, seed=0, max_length=5)
    train_pairs, valid_pairs = split_pairs(pairs, 200, seed=0)
    src_vocab, tgt_vocab = build_vocabs(train_pairs, "char", "char")
    model = Seq2Seq(src_vocab, tgt_vocab, embed_size=16, hidden_size=48, attention="dot", seed=0)
    tr = encode_pairs(train_pairs, src_vocab, tgt_vocab, "char", "char")
    va = encode_pairs(valid_pairs, src_vocab, tgt_vocab, "char", "char")
    before = evaluate(model, *va)
    history = train(model, tr, va, epochs=6, batch_size=32, lr=0.01, progress=False, out=tmp_path / "best.s2s",
                    log=lambda m: None)
    after = evaluate(model, *va)
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    assert after["loss"] < 0.5 * before["loss"]
    assert after["accuracy"] >= 0.9, after  # from 0% untrained; 99.5% measured after these 6 epochs
    best = Seq2Seq.load(tmp_path / "best.s2s")
    assert evaluate(best, *va)["accuracy"] == max(h["valid_accuracy"] for h in history)


def test_optimizer_kernels_refuse_bad_lists():
    p = [np.zeros(3, np.float32)]
    with pytest.raises(ValueError, match="must have the same length"):
        _core.adam_update(p, p + p, p, p, 1.0, 0.9, 0.999, 1e-8, 0.1, 1.0)
    with pytest.raises(TypeError, match=r"grads\[0\] has dtype float64"):
        _core.adam_update(p, [np.zeros(3)], [np.zeros(3, np.float32)], [np.zeros(3, np.float32)], 1.0, 0.9,
                          0.999, 1e-8, 0.1, 1.0)
    with pytest.raises(ValueError, match=r"m\[0\] has 4 elements"):
        _core.adam_update(p, p, [np.zeros(4, np.float32)], p, 1.0, 0.9, 0.999, 1e-8, 0.1, 1.0)
    with pytest.raises(ValueError, match="must be C-contiguous"):
        _core.grad_sum_squares([np.zeros((4, 4), np.float32)[:, ::2]])
    with pytest.raises(TypeError, match="must be float32 or float64"):
        _core.grad_sum_squares([np.zeros(3, np.int32)])
    assert _core.grad_sum_squares([np.full(100000, 0.5, np.float32), np.ones(3)]) == 25003.0


def test_training_argument_errors(tmp_path):
    model = tiny_model(attention="dot")
    data = ([[4, 5], [6]], [[4], [5, 6]])
    with pytest.raises(ValueError, match="valid_data is empty"):
        train(model, data, ([], []), epochs=1, progress=False, log=lambda m: None)
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        train(model, data, epochs="2", progress=False)
    with pytest.raises(ValueError, match="clip must be a number >= 0"):
        train(model, data, epochs=1, clip=-1, progress=False)
    with pytest.raises(ValueError, match=r"teacher-forcing probability must be a number in \[0, 1\]"):
        TeacherForcingSchedule.parse("nan")
    with pytest.raises(ValueError, match="constant schedule k must lie in"):
        TeacherForcingSchedule.parse("1.5")
    ckpt = tmp_path / "ck.s2s"
    train(model, data, epochs=1, batch_size=np.int64(2), checkpoint=ckpt, progress=False, log=lambda m: None)
    other = Seq2Seq(list("ABCDEF"), 10, embed_size=4, hidden_size=6, seed=0, attention="dot")
    with pytest.raises(ValueError, match="src_vocab differs"):
        train(other, data, epochs=2, resume=ckpt, progress=False, log=lambda m: None)
    with pytest.raises(ValueError, match="trained with seed 0, not 3"):
        train(tiny_model(attention="dot"), data, epochs=2, resume=ckpt, seed=3, progress=False, log=lambda m: None)


@pytest.mark.parametrize("text", ["linear:c=1,c=2", "exponential:k=0.9,floor=0.1,k=0.5", "linear:c=1, c = 2"])
def test_schedule_refuses_a_repeated_parameter(text):
    """A repeated key was once accepted, the last value winning."""
    from s2sext.train import TeacherForcingSchedule

    with pytest.raises(ValueError, match="is given twice"):
        TeacherForcingSchedule.parse(text)
