"""Training that converges on real data: learning-rate schedules (against plain formulas and
torch.optim.lr_scheduler), label smoothing (against torch's cross_entropy), embedding dropout
(against finite differences with the masks fixed), token batches, length filtering, --patience,
--time-budget with a fake clock, resume continuity and the training record in the model file."""

import math

import numpy as np
import pytest
import torch

from s2sext import Seq2Seq
from s2sext.data import (batches_of_indices, build_vocabs, drop_long_pairs, encode_pairs, make_task, split_pairs,
                         token_batch_indices, token_batches)
from s2sext.layers import masked_cross_entropy
from s2sext.train import SGD, Adam, LearningRateSchedule, target_arrays, train


def scripted_result(accuracy):
    """What train.evaluate returns, scripted: exact match ``accuracy`` (a fraction), the token error
    rate its complement (both in percent, as s2sext.metrics gives them), a constant loss."""
    return {"accuracy": accuracy, "loss": 1.0,
            "metrics": {"exact_match": 100 * accuracy, "token_error_rate": 100 * (1 - accuracy)}}


def quiet(*_):
    pass


# ---------------------------------------------------------------------------------------------
# Learning-rate schedules


def rates_over(schedule, epochs, updates_per_epoch, improved=None):
    """The rate of every update over ``epochs`` epochs, the schedule told after each epoch."""
    rates = []
    for e in range(epochs):
        rates += [schedule.rate(e * updates_per_epoch + u) for u in range(updates_per_epoch)]
        schedule.end_epoch(None if improved is None else improved[e])
    return rates


def test_constant_step_exponential_rates_follow_their_formulas():
    lr, per_epoch = 0.01, 3
    constant = rates_over(LearningRateSchedule("constant", lr), 5, per_epoch)
    assert constant == [lr] * 15
    step = rates_over(LearningRateSchedule("step", lr, decay=0.3, step_epochs=2), 7, per_epoch)
    assert step == pytest.approx([lr * 0.3 ** (u // per_epoch // 2) for u in range(21)], rel=1e-15, abs=0)
    expo = rates_over(LearningRateSchedule("exponential", lr, decay=0.9), 6, per_epoch)
    assert expo == pytest.approx([lr * 0.9 ** (u // per_epoch) for u in range(18)], rel=1e-15, abs=0)
    floored = rates_over(LearningRateSchedule("exponential", lr, decay=0.5, min_lr=0.002), 5, 1)
    assert floored == pytest.approx([0.01, 0.005, 0.0025, 0.002, 0.002], rel=1e-15, abs=0)


def test_step_and_exponential_match_torch_schedulers():
    """The same rates as torch's StepLR / ExponentialLR stepped once an epoch (torch multiplies
    each epoch; the formula takes a power: equal to float64 rounding)."""
    for ours, make_torch in [
        (LearningRateSchedule("step", 0.1, decay=0.5, step_epochs=3),
         lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)),
        (LearningRateSchedule("exponential", 0.1, decay=0.7),
         lambda opt: torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.7)),
    ]:
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        theirs = make_torch(opt)
        for _ in range(10):
            assert ours.rate(0) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12)
            ours.end_epoch(None)
            opt.step()
            theirs.step()


def test_warmup_is_linear_and_combines_with_decay():
    s = LearningRateSchedule("constant", 0.5, warmup_steps=4)
    assert [s.rate(u) for u in range(6)] == pytest.approx([0.125, 0.25, 0.375, 0.5, 0.5, 0.5], rel=1e-15)
    s = LearningRateSchedule("exponential", 1.0, decay=0.5, warmup_steps=5)
    got = rates_over(s, 3, 2)  # updates 0..5: the decay of the epoch times the warmup factor
    want = [0.5 ** (u // 2) * min(1, (u + 1) / 5) for u in range(6)]
    assert got == pytest.approx(want, rel=1e-15)


@pytest.mark.parametrize("patience, decay, min_lr", [(0, 0.5, 0.0), (1, 0.5, 0.0), (2, 0.1, 1e-4), (1, 0.9, 0.006)])
def test_plateau_matches_torch_reduce_lr_on_plateau(patience, decay, min_lr):
    """Fed the same metric sequence (mode max, threshold 0: an epoch improves when its metric beats
    every earlier one, which is training's ``is_best``), the rates agree epoch for epoch."""
    metrics = [0.1, 0.2, 0.2, 0.15, 0.2, 0.3, 0.3, 0.3, 0.3, 0.29, 0.31, 0.31, 0.1, 0.1, 0.1, 0.1, 0.1, 0.5]
    ours = LearningRateSchedule("plateau", 0.01, decay=decay, patience=patience, min_lr=min_lr)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.01)
    theirs = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=decay, patience=patience,
                                                        threshold=0.0, threshold_mode="abs", min_lr=min_lr)
    best = -math.inf
    ours_rates, torch_rates = [], []
    for m in metrics:
        ours.end_epoch(m > best)
        best = max(best, m)
        theirs.step(m)
        ours_rates.append(ours.rate(10**6))
        torch_rates.append(opt.param_groups[0]["lr"])
    assert ours_rates == pytest.approx(torch_rates, rel=1e-15, abs=0)
    assert min(ours_rates) < 0.01  # the sequence does reach a plateau


@pytest.mark.parametrize("kwargs, error, message", [
    ({"kind": "cosine"}, ValueError, "lr_schedule must be one of constant, step, exponential, plateau"),
    ({"lr": 0}, ValueError, "lr must be a finite number > 0"),
    ({"lr": -1.0}, ValueError, "lr must be a finite number > 0"),
    ({"lr": float("nan")}, ValueError, "lr must be a finite number > 0"),
    ({"lr": float("inf")}, ValueError, "lr must be a finite number > 0"),
    ({"decay": 0}, ValueError, r"lr_decay must be a number in \(0, 1\)"),
    ({"decay": 1.0}, ValueError, r"lr_decay must be a number in \(0, 1\)"),
    ({"decay": float("nan")}, ValueError, r"lr_decay must be a number in \(0, 1\)"),
    ({"step_epochs": 0}, ValueError, "lr_step_epochs must be >= 1"),
    ({"step_epochs": 1.5}, TypeError, "lr_step_epochs must be an int"),
    ({"warmup_steps": -1}, ValueError, "warmup_steps must be >= 0"),
    ({"min_lr": -0.1}, ValueError, "min_lr must be a number in"),
    ({"min_lr": 1.0}, ValueError, r"min_lr must be a number in \[0, lr=0.001\]"),
    ({"min_lr": float("nan")}, ValueError, "min_lr must be a number in"),
    ({"patience": -1}, ValueError, "lr_patience must be >= 0"),
])
def test_schedule_refuses_bad_values(kwargs, error, message):
    kind = kwargs.pop("kind", "step")
    with pytest.raises(error, match=message):
        LearningRateSchedule(kind, kwargs.pop("lr", 1e-3), **kwargs)


def test_optimizers_take_a_settable_rate():
    for make in (Adam, SGD):
        p = {"w": np.ones(3, np.float32)}
        opt = make(p, lr=0.1)
        opt.lr = 0.0  # a rate of 0 leaves the weights unchanged
        opt.step({"w": np.ones(3, np.float32)})
        assert np.array_equal(p["w"], np.ones(3, np.float32))
        for bad in (-1.0, float("nan"), float("inf"), "0.1"):
            with pytest.raises((ValueError, TypeError), match="lr must be a finite number >= 0"):
                opt.lr = bad


def test_sgd_rate_change_matches_torch():
    """SGD with the rate changed between steps: the same weights as torch.optim.SGD with its
    param group's lr changed alike (float64)."""
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal(5)
    grads = [rng.standard_normal(5) for _ in range(4)]
    rates = [0.1, 0.05, 0.025, 0.3]
    ours = {"w": w0.copy()}
    opt = SGD(ours, lr=0.1, momentum=0.9)
    tw = torch.tensor(w0, requires_grad=True)
    topt = torch.optim.SGD([tw], lr=0.1, momentum=0.9)
    for g, r in zip(grads, rates):
        opt.lr = r
        opt.step({"w": g.copy()})
        topt.param_groups[0]["lr"] = r
        tw.grad = torch.tensor(g)
        topt.step()
    assert np.abs(ours["w"] - tw.detach().numpy()).max() < 1e-14  # float64, a few operations


# ---------------------------------------------------------------------------------------------
# Label smoothing


@pytest.mark.parametrize("B, T, V", [(1, 1, 5), (3, 4, 7), (3, 2, 5), (1, 6, 7)])
@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
def test_label_smoothed_loss_and_gradient_match_torch(B, T, V, eps):
    rng = np.random.default_rng(B * 100 + T * 10 + V)
    logits = rng.standard_normal((B, T, V)) * 3
    targets = rng.integers(0, V, (B, T))
    lengths = rng.integers(1, T + 1, B)
    lengths[0] = T
    valid = np.arange(T)[None, :] < lengths[:, None]
    targets[~valid] = 0  # padding ids, as target_arrays writes them
    loss, d_logits, count, correct = masked_cross_entropy(logits, targets, lengths, label_smoothing=eps)

    t_logits = torch.tensor(logits, requires_grad=True)
    t_targets = torch.tensor(np.where(valid, targets, -100))  # torch's ignore_index for padding
    t_loss = torch.nn.functional.cross_entropy(t_logits.reshape(-1, V), t_targets.reshape(-1),
                                               label_smoothing=eps, ignore_index=-100, reduction="sum")
    t_loss = t_loss / int(valid.sum())  # the mean over valid tokens (torch's "mean" divides alike)
    t_loss.backward()
    assert count == int(valid.sum())
    # float64 throughout: the differences are rounding of sums over at most B*T*V = 126 terms
    assert abs(loss - t_loss.item()) < 1e-13, (loss, t_loss.item())
    err = np.abs(d_logits - t_logits.grad.numpy()).max()
    assert err < 1e-15, err
    assert np.all(d_logits[~valid] == 0)


def test_label_smoothing_refuses_bad_values():
    logits = np.zeros((1, 2, 5), np.float32)
    targets = np.zeros((1, 2), np.int64)
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"label_smoothing must be a number in \[0, 1\]"):
            masked_cross_entropy(logits, targets, np.array([2]), label_smoothing=bad)


def test_model_loss_with_label_smoothing_mixes_nll_and_uniform():
    model = Seq2Seq(10, 9, embed_size=4, hidden_size=6, seed=0, attention="dot")
    src = np.array([[4, 5, 6], [7, 8, 0]])
    src_len = np.array([3, 2])
    tgt_in, tgt_out, lengths = target_arrays(np.array([[4, 5], [6, 0]]), np.array([2, 1]))
    plain, _, _ = model.loss_and_grads(src, src_len, tgt_in, tgt_out, lengths, need_grads=False)
    uniform, _, _ = model.loss_and_grads(src, src_len, tgt_in, tgt_out, lengths, label_smoothing=1.0,
                                         need_grads=False)
    smoothed, grads, _ = model.loss_and_grads(src, src_len, tgt_in, tgt_out, lengths, label_smoothing=0.1)
    # the definition is linear in eps; float32 logits, float64 sums: agreement to float32 rounding
    assert smoothed == pytest.approx(0.9 * plain + 0.1 * uniform, rel=1e-6)
    assert plain != uniform
    # the smoothed loss's gradient by central differences on one output weight (float32 model)
    w = model.params["out.weight"]
    i, j = 3, 2
    h = 1e-2
    old = w[i, j]
    w[i, j] = old + h
    up, _, _ = model.loss_and_grads(src, src_len, tgt_in, tgt_out, lengths, label_smoothing=0.1, need_grads=False)
    w[i, j] = old - h
    down, _, _ = model.loss_and_grads(src, src_len, tgt_in, tgt_out, lengths, label_smoothing=0.1, need_grads=False)
    w[i, j] = old
    # float32 forward: the difference quotient carries about 1e-7 / 1e-2 relative noise, plus h**2 curvature
    assert abs((up - down) / (2 * h) - grads["out.weight"][i, j]) < 2e-4


# ---------------------------------------------------------------------------------------------
# Embedding dropout


class _FixedMasks:
    """An rng stand-in whose ``random`` replays the same draws every time the model is run."""

    def __init__(self, seed):
        self.seed = seed
        self.reset()

    def reset(self):
        self._rng = np.random.default_rng(self.seed)

    def random(self, *args, **kwargs):
        return self._rng.random(*args, **kwargs)


@pytest.mark.parametrize("attention, style, input_feeding", [("dot", "luong", False), ("concat", "bahdanau", False),
                                                              ("general", "luong", True)])
def test_embed_dropout_gradient_by_finite_differences(attention, style, input_feeding):
    """With the masks fixed (the same draws for every evaluation), the embeddings' gradients equal
    central differences of the loss, on the all-steps path and the step-by-step path."""
    model = Seq2Seq(9, 8, embed_size=5, hidden_size=6, seed=1, attention=attention, attention_style=style,
                    input_feeding=input_feeding)
    for name, p in model.params.items():  # the finite differences below run in float64
        model.params[name] = p.astype(np.float64)
    src = np.array([[4, 5, 6, 7], [8, 4, 0, 0], [5, 0, 0, 0]])
    src_len = np.array([4, 2, 1])
    tgt_in, tgt_out, lengths = target_arrays(np.array([[4, 5, 6], [7, 0, 0], [5, 6, 0]]), np.array([3, 1, 2]))
    masks = _FixedMasks(7)

    def loss(need_grads=False):
        masks.reset()
        return model.loss_and_grads(src, src_len, tgt_in, tgt_out, lengths, rng=masks, embed_dropout=0.4,
                                    need_grads=need_grads)

    value, grads, _ = loss(True)
    masks.reset()
    no_drop, _, _ = model.loss_and_grads(src, src_len, tgt_in, tgt_out, lengths, rng=masks, need_grads=False)
    assert value != no_drop  # the dropout did change the forward
    for name in ("src_embed", "tgt_embed"):
        table = model.params[name]
        worst = 0.0
        for row in (4, 5, 7):
            for col in range(table.shape[1]):
                old = table[row, col]
                table[row, col] = old + 1e-6
                up = loss()[0]
                table[row, col] = old - 1e-6
                down = loss()[0]
                table[row, col] = old
                worst = max(worst, abs((up - down) / 2e-6 - grads[name][row, col]))
        # float64 kernels: central differences with h = 1e-6 agree to about 1e-8
        assert worst < 1e-7, (name, worst)


def test_embed_dropout_only_while_training():
    model = Seq2Seq(9, 8, embed_size=5, hidden_size=6, seed=1)
    src, src_len = np.array([[4, 5, 6]]), np.array([3])
    tgt_in, tgt_out, lengths = target_arrays(np.array([[4, 5]]), np.array([2]))
    base = model.loss_and_grads(src, src_len, tgt_in, tgt_out, lengths, train=False, need_grads=False)[0]
    off = model.loss_and_grads(src, src_len, tgt_in, tgt_out, lengths, rng=np.random.default_rng(0), train=False,
                               embed_dropout=0.5, need_grads=False)[0]
    on = model.loss_and_grads(src, src_len, tgt_in, tgt_out, lengths, rng=np.random.default_rng(0),
                              embed_dropout=0.5, need_grads=False)[0]
    assert off == base and on != base
    for bad in (1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="embed_dropout must be a number in"):
            model.loss_and_grads(src, src_len, tgt_in, tgt_out, lengths, embed_dropout=bad)


# ---------------------------------------------------------------------------------------------
# Token batches and length filtering


def random_pairs(n, seed, longest=30):
    rng = np.random.default_rng(seed)
    src = [list(rng.integers(4, 20, rng.integers(1, longest + 1))) for _ in range(n)]
    tgt = [list(rng.integers(4, 20, rng.integers(1, longest + 1))) for _ in range(n)]
    return src, tgt


@pytest.mark.parametrize("max_tokens", [1, 7, 64, 1000])
def test_token_batches_are_bounded_and_cover_every_pair_once(max_tokens):
    src, tgt = random_pairs(523, seed=max_tokens)
    plan = token_batch_indices(src, tgt, max_tokens, seed=5)
    flat = sorted(i for batch in plan for i in batch)
    assert flat == list(range(len(src)))  # every pair exactly once
    for batch in plan:
        cost = len(batch) * max(max(len(src[i]), len(tgt[i])) for i in batch)
        # a pair longer than max_tokens forms a batch of its own
        assert cost <= max_tokens or len(batch) == 1, (batch, cost)
    assert plan == token_batch_indices(src, tgt, max_tokens, seed=5)  # the same seed, the same batches
    assert plan != token_batch_indices(src, tgt, max_tokens, seed=6)
    for (s_ids, s_len, t_ids, t_len), batch in zip(token_batches(src, tgt, max_tokens, seed=5), plan):
        assert s_len.tolist() == [len(src[i]) for i in batch]
        assert t_ids.shape == (len(batch), max(len(tgt[i]) for i in batch))
        assert s_ids[0, : s_len[0]].tolist() == src[batch[0]]


def test_token_batches_hold_pairs_of_similar_length():
    """Length bucketing: with a pool of many batches, a batch's padding is far below a random batch's."""
    src, tgt = random_pairs(4000, seed=1, longest=50)
    plan = token_batch_indices(src, tgt, 400, seed=0)
    size = [max(len(s), len(t)) for s, t in zip(src, tgt)]
    padding = sum(len(b) * max(size[i] for i in b) - sum(size[i] for i in b) for b in plan)
    assert padding < 0.1 * sum(size)
    assert max(len(b) for b in plan) > 3 * min(len(b) for b in plan)  # short pairs come in bigger batches


def test_token_batches_refuse_bad_values():
    src, tgt = random_pairs(5, seed=0)
    with pytest.raises(ValueError, match="max_tokens must be >= 1"):
        token_batch_indices(src, tgt, 0)
    with pytest.raises(TypeError, match="max_tokens must be an int"):
        token_batch_indices(src, tgt, 10.0)
    with pytest.raises(ValueError, match="src_seqs is empty"):
        token_batch_indices([], [], 10)
    with pytest.raises(ValueError, match=r"index_lists\[1\] must be a non-empty list"):
        list(batches_of_indices(src, tgt, [[0], [5]]))


def test_drop_long_pairs_counts():
    src = [[4] * n for n in (1, 5, 9, 3)]
    tgt = [[5] * n for n in (8, 2, 2, 3)]
    kept_src, kept_tgt, dropped = drop_long_pairs(src, tgt, 5, 4)
    assert dropped == 2 and kept_src == [src[1], src[3]] and kept_tgt == [tgt[1], tgt[3]]
    assert drop_long_pairs(src, tgt, None, None)[2] == 0
    assert drop_long_pairs(src, tgt, 9, None)[2] == 0
    with pytest.raises(ValueError, match="max_source_length must be >= 1"):
        drop_long_pairs(src, tgt, 0, None)


# ---------------------------------------------------------------------------------------------
# The training loop


@pytest.fixture(scope="module")
def reverse_data():
    pairs = make_task("reverse", 400, seed=0, max_length=5)
    train_pairs, valid_pairs = split_pairs(pairs, 60, seed=0)
    src_vocab, tgt_vocab = build_vocabs(train_pairs, "char", "char")
    return (src_vocab, tgt_vocab, encode_pairs(train_pairs, src_vocab, tgt_vocab, "char", "char"),
            encode_pairs(valid_pairs, src_vocab, tgt_vocab, "char", "char"))


def fresh_model(data, **kw):
    src_vocab, tgt_vocab, _, _ = data
    return Seq2Seq(src_vocab, tgt_vocab, embed_size=8, hidden_size=16, seed=0, **kw)


def test_training_record_lands_in_the_best_model_file(reverse_data, tmp_path):
    _, _, tr, va = reverse_data
    out = tmp_path / "best.s2s"
    lines = []
    history = train(fresh_model(reverse_data), tr, va, epochs=3, batch_tokens=60, lr=0.01, lr_schedule="step",
                    lr_decay=0.5, warmup_steps=5, label_smoothing=0.1, embed_dropout=0.1, patience=5,
                    time_budget=3600, seed=2, max_source_length=4, max_target_length=5, progress=False, out=out,
                    log=lines.append)
    _, extra, _ = Seq2Seq.load(out, return_extra=True)
    record = extra["training"]
    assert record["lr_schedule"] == {"kind": "step", "lr": 0.01, "decay": 0.5, "step_epochs": 1, "warmup_steps": 5,
                                     "min_lr": 0.0, "patience": 1}
    assert (record["label_smoothing"], record["embed_dropout"], record["patience"], record["time_budget"]) == \
        (0.1, 0.1, 5, 3600.0)
    assert (record["batch_size"], record["batch_tokens"], record["seed"]) == (None, 60, 2)
    assert (record["epochs"], record["epochs_run"], record["stop_reason"]) == (3, 3, "epochs")
    best = max(history, key=lambda r: (r["valid_accuracy"], -r["valid_loss"]))
    assert record["best_epoch"] == best["epoch"]
    assert record["train_loss_kind"] == "label-smoothed cross-entropy (eps 0.1)"
    assert all(r["train_loss_kind"] == record["train_loss_kind"] for r in history)
    n_long = sum(len(s) > 4 or len(t) > 5 for s, t in zip(*tr))
    n_long_valid = sum(len(s) > 4 or len(t) > 5 for s, t in zip(*va))
    assert n_long > 0
    assert record["length_filter"] == {"max_source_length": 4, "max_target_length": 5,
                                       "train_pairs_dropped": n_long, "train_pairs_kept": len(tr[0]) - n_long,
                                       "valid_pairs_dropped": n_long_valid,
                                       "valid_pairs_kept": len(va[0]) - n_long_valid}
    assert lines[0] == (f"dropped {n_long:,} of {len(tr[0]):,} training pairs and {n_long_valid} of {len(va[0])} "
                        "validation pairs longer than 4 source / 5 target tokens")
    # the epoch lines start as before and say the rate: epoch 1 ends in warmup's full rate, then halves
    epoch_lines = [line for line in lines if line.startswith("epoch ")]
    assert [line.split(", ")[1] for line in epoch_lines] == ["lr 0.01", "lr 0.005", "lr 0.0025"]
    assert [r["lr"] for r in history] == pytest.approx([0.01, 0.005, 0.0025], rel=1e-15)


def test_patience_stops_at_the_right_epoch(reverse_data, tmp_path, monkeypatch):
    """The validation outcome is scripted (evaluate replaced), so the stop is known: the best
    epoch is 2, patience 3 stops after epoch 5, one line saying why."""
    import s2sext.train as train_module

    accuracies = iter([0.1, 0.5, 0.4, 0.5, 0.3, 0.9, 0.9])
    monkeypatch.setattr(train_module, "evaluate", lambda *a, **k: scripted_result(next(accuracies)))
    _, _, tr, va = reverse_data
    lines = []
    out = tmp_path / "best.s2s"
    history = train(fresh_model(reverse_data), tr, va, epochs=7, batch_size=64, patience=3, progress=False, out=out,
                    log=lines.append)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4, 5]
    assert lines[-1] == ("stopping after epoch 5: the validation metric has not improved for 3 epochs "
                         "(patience 3); the best was epoch 2")
    record = Seq2Seq.load(out, return_extra=True)[1]["training"]
    assert (record["stop_reason"], record["epochs_run"], record["best_epoch"]) == ("patience", 5, 2)


def test_plateau_lowers_the_rate_in_training(reverse_data, monkeypatch):
    import s2sext.train as train_module

    accuracies = iter([0.1, 0.1, 0.1, 0.2, 0.2, 0.2])
    monkeypatch.setattr(train_module, "evaluate", lambda *a, **k: scripted_result(next(accuracies)))
    _, _, tr, va = reverse_data
    history = train(fresh_model(reverse_data), tr, va, epochs=6, batch_size=64, lr=0.01, lr_schedule="plateau",
                    lr_patience=1, lr_decay=0.1, progress=False, log=quiet)
    # bad epochs: 2, 3 (count 2 > 1: lowered after epoch 3), 4 improves, 5, 6 (lowered after 6)
    assert [r["lr"] for r in history] == pytest.approx([0.01, 0.01, 0.01, 0.001, 0.001, 0.001], rel=1e-15)


class FakeClock:
    """Seconds that stand still unless a test moves ``now``."""

    def __init__(self, now=0.0):
        self.now = now

    def __call__(self):
        return self.now


def test_time_budget_stops_before_overrunning_and_keeps_the_best(reverse_data, tmp_path, monkeypatch):
    """Every epoch takes 10 fake seconds; a budget of 35 s runs 3 epochs (30 s) and stops before
    the fourth (30 + 10 > 35); the best model file holds the best epoch's weights."""
    import s2sext.train as train_module

    clock = FakeClock(0)
    real_step = train_module.Adam.step
    _, _, tr, va = reverse_data
    per_epoch = math.ceil(len(tr[0]) / 64)

    def step(self, grads, scale=1.0):
        clock.now += 10.0 / per_epoch
        real_step(self, grads, scale)

    monkeypatch.setattr(train_module.Adam, "step", step)
    accuracies = iter([0.2, 0.6, 0.4, 0.9, 0.9])
    monkeypatch.setattr(train_module, "evaluate", lambda *a, **k: scripted_result(next(accuracies)))
    snapshots = {}
    real_save = Seq2Seq.save

    def save(self, path, **kw):
        snapshots[len(snapshots)] = {k: v.copy() for k, v in self.params.items()}
        real_save(self, path, **kw)

    monkeypatch.setattr(Seq2Seq, "save", save)
    lines = []
    out = tmp_path / "best.s2s"
    model = fresh_model(reverse_data)
    history = train(model, tr, va, epochs=10, batch_size=64, time_budget=35, clock=clock, progress=False, out=out,
                    log=lines.append)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert clock.now == pytest.approx(30.0)
    assert lines[-1] == ("stopping before epoch 4: 30.0 s spent, and another epoch (up to 10.0 s so far) would "
                         "overrun the time budget of 35 s")
    best, extra, _ = Seq2Seq.load(out, return_extra=True)
    assert (extra["training"]["stop_reason"], extra["training"]["best_epoch"]) == ("time_budget", 2)
    # saves: epoch 1 (best), epoch 2 (best); the file holds epoch 2's weights, not the last epoch's
    assert len(snapshots) == 2
    for name, value in best.params.items():
        assert np.array_equal(value, snapshots[1][name]), name
    assert any(not np.array_equal(best.params[n], model.params[n]) for n in best.params)


def test_time_budget_runs_the_first_epoch_and_an_exact_fit():
    """No estimate before the first epoch: it runs whatever the budget; an epoch that would end
    exactly at the budget still runs (only overrunning stops)."""
    model = Seq2Seq(10, 10, embed_size=4, hidden_size=6, seed=0)
    data = ([[4, 5], [6]], [[4], [5, 6]])
    clock = FakeClock(0)

    def log(msg):
        if msg.startswith("epoch "):
            clock.now += 5.0  # the epoch line is logged once per epoch

    history = train(model, data, epochs=5, time_budget=10, clock=clock, progress=False, log=log)
    assert len(history) == 2  # 0 + 5 <= 10 runs epoch 2; 10 + 5 > 10 stops before epoch 3
    history = train(model, data, epochs=5, time_budget=1, clock=FakeClock(0), progress=False, log=quiet)
    assert len(history) == 5  # epochs measured at 0 s never overrun


def test_resume_continues_the_schedule_exactly(reverse_data, tmp_path, monkeypatch):
    """Two runs split by resume give the history (rates included) and weights of one run, with a
    plateau schedule whose state crosses the split (the validation outcome scripted: epoch 2 is
    bad, epoch 3 too, so the rate falls after epoch 3 only if the count of epoch 2 was carried
    over), warmup, label smoothing, embed dropout and token batches."""
    import s2sext.train as train_module

    script = []
    monkeypatch.setattr(train_module, "evaluate", lambda *a, **k: scripted_result(script.pop(0)))
    _, _, tr, va = reverse_data
    kw = dict(batch_tokens=80, lr=0.02, lr_schedule="plateau", lr_patience=1, lr_decay=0.5, warmup_steps=7,
              label_smoothing=0.1, embed_dropout=0.2, patience=10, seed=4, progress=False, log=quiet)
    accuracies = [0.5, 0.4, 0.3, 0.6, 0.6]
    full_model = fresh_model(reverse_data)
    script[:] = accuracies
    full = train(full_model, tr, va, epochs=5, checkpoint=tmp_path / "full.ck", **kw)
    part_model = fresh_model(reverse_data)
    script[:] = accuracies[:2]
    train(part_model, tr, va, epochs=2, checkpoint=tmp_path / "part.ck", **kw)
    resumed_model = fresh_model(reverse_data)
    script[:] = accuracies[2:]
    resumed = train(resumed_model, tr, va, epochs=5, resume=tmp_path / "part.ck", **kw)
    assert [r["lr"] for r in full] == pytest.approx([0.02, 0.02, 0.02, 0.01, 0.01], rel=1e-15)
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(resumed) == strip(full)
    for name in full_model.params:
        assert np.array_equal(full_model.params[name], resumed_model.params[name]), name
    with pytest.raises(ValueError, match="learning-rate settings .* differ"):
        train(fresh_model(reverse_data), tr, va, epochs=5, resume=tmp_path / "part.ck", **{**kw, "lr_decay": 0.3})


@pytest.mark.parametrize("kwargs, error, message", [
    ({"patience": 0}, ValueError, "patience must be >= 1"),
    ({"patience": 2.0}, TypeError, "patience must be an int"),
    ({"time_budget": 0}, ValueError, "time_budget must be a finite number of seconds > 0"),
    ({"time_budget": -5}, ValueError, "time_budget must be a finite number of seconds > 0"),
    ({"time_budget": float("nan")}, ValueError, "time_budget must be a finite number of seconds > 0"),
    ({"time_budget": float("inf")}, ValueError, "time_budget must be a finite number of seconds > 0"),
    ({"label_smoothing": 1.1}, ValueError, r"label_smoothing must be a number in \[0, 1\]"),
    ({"label_smoothing": float("nan")}, ValueError, r"label_smoothing must be a number in \[0, 1\]"),
    ({"embed_dropout": 1.0}, ValueError, r"embed_dropout must be a number in \[0, 1\)"),
    ({"embed_dropout": -0.5}, ValueError, r"embed_dropout must be a number in \[0, 1\)"),
    ({"batch_tokens": 0}, ValueError, "batch_tokens must be >= 1"),
    ({"lr_schedule": "plateau", "lr_decay": float("nan")}, ValueError, r"lr_decay must be a number in \(0, 1\)"),
    ({"warmup_steps": -3}, ValueError, "warmup_steps must be >= 0"),
    ({"max_source_length": 0}, ValueError, "max_source_length must be >= 1"),
    ({"max_source_length": 1, "max_target_length": 1}, ValueError, "every training pair is longer than"),
])
def test_train_refuses_bad_values(kwargs, error, message):
    model = Seq2Seq(10, 10, embed_size=4, hidden_size=6, seed=0)
    data = ([[4, 5], [6, 7]], [[4, 5], [5, 6]])
    with pytest.raises(error, match=message):
        train(model, data, data, epochs=1, progress=False, log=quiet, **kwargs)


def test_patience_and_plateau_need_validation_data():
    model = Seq2Seq(10, 10, embed_size=4, hidden_size=6, seed=0)
    data = ([[4, 5]], [[4]])
    with pytest.raises(ValueError, match="patience needs valid_data"):
        train(model, data, epochs=1, patience=2, progress=False, log=quiet)
    with pytest.raises(ValueError, match="lr_schedule='plateau' needs valid_data"):
        train(model, data, epochs=1, lr_schedule="plateau", progress=False, log=quiet)
