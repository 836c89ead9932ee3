"""Data-parallel training (s2sext.distributed): two processes over gloo on localhost train like one
process on the same global batches, write files and log from rank 0 only, resume a checkpoint as
one process does, in train() and in `s2sext train` under torchrun; one process never imports torch;
s2sext.torch modules under DistributedDataParallel train like one process; the helpers' checks."""

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
mp = pytest.importorskip("torch.multiprocessing")

from s2sext import Seq2Seq, _core  # noqa: E402
from s2sext.data import build_vocabs, encode_pairs, make_task  # noqa: E402
from s2sext.train import RecordingReducer, SingleProcess, _default_reducer, train  # noqa: E402

# 410 pairs in batches of 27: 16 batches an epoch, the last of 5 rows (shards of 2 and 3); 4 epochs
# of 16 are the first 64 steps.
PAIRS, BATCH, EPOCHS = 410, 27, 4
# The two runs differ only in how the global batch's gradient is summed (two shard means weighted
# by tokens in float64, against one float32 mean), a few float32 roundings per step that Adam then
# carries: the worst of the 64 steps differed by under 1e-7 relative when this was written, while an
# unweighted mean of the shards' gradients makes the losses differ by about 1e-2.
RELATIVE = 1e-5




def task():
    pairs = make_task("reverse", PAIRS + 40, seed=0, max_length=6)
    src_vocab, tgt_vocab = build_vocabs(pairs, "char", "char")
    tr = encode_pairs(pairs[:PAIRS], src_vocab, tgt_vocab, "char", "char")
    va = encode_pairs(pairs[PAIRS:], src_vocab, tgt_vocab, "char", "char")
    return src_vocab, tgt_vocab, tr, va


def run(reducer, directory, name, epochs=EPOCHS, resume=None, init_seed=0, **kw):
    """Train the tiny model; -> (per-update losses, history, log lines)."""
    src_vocab, tgt_vocab, tr, va = task()
    model = Seq2Seq(src_vocab, tgt_vocab, embed_size=8, hidden_size=16, attention="dot", seed=init_seed)
    recording, lines = RecordingReducer(reducer), []
    history = train(model, tr, va, epochs=epochs, batch_size=BATCH, lr=0.01, progress=False, seed=3,
                    out=os.path.join(directory, f"{name}.s2s"), checkpoint=os.path.join(directory, f"{name}.ckpt"),
                    resume=resume, log=lines.append, reducer=recording, **kw)
    return recording.losses, history, lines


def _worker(rank, world, directory):
    from s2sext.distributed import TorchReducer

    _core.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{directory}/rendezvous", rank=rank, world_size=world)
    try:
        reducer = TorchReducer()
        # rank 1 starts from other weights: rank 0's are broadcast before the first update
        full = run(reducer, directory, "full", init_seed=rank)
        half = run(reducer, directory, "part", epochs=2)
        resumed = run(reducer, directory, "part", resume=os.path.join(directory, "part.ckpt"))
        # dropout and sampled decoder inputs: each rank its own draws, the parameters still in step
        src_vocab, tgt_vocab, tr, va = task()
        model = Seq2Seq(src_vocab, tgt_vocab, embed_size=8, hidden_size=16, attention="dot", seed=0)
        random = train(model, tr, va, epochs=1, batch_size=BATCH, progress=False, log=lambda line: None,
                       embed_dropout=0.3, teacher_forcing="0.5", reducer=reducer)
        result = {"full": full, "half": half, "resumed": resumed, "random_loss": random[0]["train_loss"],
                  "random_params": float(sum(np.float64(v).sum() for v in model.params.values()))}
        with open(os.path.join(directory, f"rank{rank}.json"), "w") as f:
            json.dump(result, f)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("ddp"))
    mp.spawn(_worker, args=(2, directory), nprocs=2, join=True)
    results = []
    for rank in range(2):
        with open(os.path.join(directory, f"rank{rank}.json")) as f:
            results.append(json.load(f))
    return directory, results


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    _core.set_num_threads(1)
    directory = str(tmp_path_factory.mktemp("single"))
    return directory, run(SingleProcess(), directory, "full")


def test_two_processes_give_the_one_process_losses(two_processes, one_process):
    _, results = two_processes
    single_losses, single_history, _ = one_process[1]
    assert len(single_losses) == 64
    for rank in range(2):
        losses, history, _ = results[rank]["full"]
        np.testing.assert_allclose(losses, single_losses, rtol=RELATIVE)
        for mine, theirs in zip(history, single_history):
            for key in ("train_loss", "train_token_accuracy", "lr", "valid_loss", "valid_exact_match"):
                assert mine[key] == pytest.approx(theirs[key], rel=RELATIVE), key
    # both ranks hold the same numbers (they reduce to the same sums)
    assert results[0]["full"][0] == results[1]["full"][0]


def test_two_process_files_are_the_one_process_files(two_processes, one_process):
    directory, _ = two_processes
    single = Seq2Seq.load(os.path.join(one_process[0], "full.s2s"))
    both = Seq2Seq.load(os.path.join(directory, "full.s2s"))
    for name, value in single.params.items():
        np.testing.assert_allclose(both.params[name], value, rtol=1e-4, atol=1e-6)  # the losses' drift, in weights


def test_rank_zero_alone_logs(two_processes):
    _, results = two_processes
    lines = results[0]["full"][2]
    assert [line.split(":")[0] for line in lines] == [f"epoch {e}" for e in range(1, EPOCHS + 1)]
    assert results[1]["full"][2] == [] and results[1]["resumed"][2] == []


def test_with_dropout_and_sampling_the_ranks_stay_in_step(two_processes):
    _, results = two_processes
    assert results[0]["random_params"] == results[1]["random_params"]
    assert results[0]["random_loss"] == results[1]["random_loss"]


def test_two_process_resume_equals_the_uninterrupted_run(two_processes):
    _, results = two_processes
    for rank in range(2):
        full_losses, full_history, _ = results[rank]["full"]
        half_losses, _, _ = results[rank]["half"]
        resumed_losses, resumed_history, lines = results[rank]["resumed"]
        # the resumed run continues the same updates (float32 restored exactly from the checkpoint)
        np.testing.assert_allclose(half_losses + resumed_losses, full_losses, rtol=RELATIVE)
        assert [h["epoch"] for h in resumed_history] == [1, 2, 3, 4]
    assert results[0]["resumed"][2][0].startswith("resumed from")


def test_only_rank_zero_writes(tmp_path):
    directory = str(tmp_path)
    mp.spawn(_write_worker, args=(2, directory), nprocs=2, join=True)
    written = sorted(name for name in os.listdir(directory) if name != "rendezvous")
    assert written == ["rank0.ckpt", "rank0.s2s"]


def _write_worker(rank, world, directory):
    from s2sext.distributed import TorchReducer

    _core.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{directory}/rendezvous", rank=rank, world_size=world)
    try:
        # each rank names its own files, so a file of rank 1 would show; no reducer given: train()
        # finds the process group itself
        src_vocab, tgt_vocab, tr, va = task()
        model = Seq2Seq(src_vocab, tgt_vocab, embed_size=8, hidden_size=16, attention="dot", seed=0)
        lines = []
        history = train(model, tr, va, epochs=1, batch_size=BATCH, progress=False, log=lines.append,
                        out=os.path.join(directory, f"rank{rank}.s2s"),
                        checkpoint=os.path.join(directory, f"rank{rank}.ckpt"))
        assert len(lines) == (1 if rank == 0 else 0) and len(history) == 1
        assert isinstance(_default_reducer(), TorchReducer)
    finally:
        dist.destroy_process_group()


def test_shards_cover_the_batch():
    from s2sext.distributed import TorchReducer

    reducer = TorchReducer.__new__(TorchReducer)
    for world in (1, 2, 3, 5):
        for rows in (0, 1, 4, 27):
            reducer.world_size = world
            covered = []
            for rank in range(world):
                reducer.rank = rank
                part = reducer.shard(rows)
                covered.extend(range(rows)[part])
            assert covered == list(range(rows))


def test_environment_world():
    from s2sext.distributed import default_threads, world_of

    assert world_of({}) is None
    assert world_of({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}) == (1, 2, 2)
    assert world_of({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}) == (3, 4, 2)
    with pytest.raises(ValueError, match="RANK must be an integer; got 'x'"):
        world_of({"RANK": "x", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})
    with pytest.raises(ValueError, match=r"RANK must be in \[0, WORLD_SIZE=2\); got 2"):
        world_of({"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})
    assert default_threads(2, cpus=2) == 1 and default_threads(2, cpus=16) == 8 and default_threads(4, cpus=2) == 1


def test_torch_reducer_needs_a_process_group():
    from s2sext.distributed import TorchReducer

    if dist.is_initialized():  # pragma: no cover - pytest never initialises one
        pytest.skip("a process group is initialised")
    with pytest.raises(ValueError, match="needs an initialised torch.distributed process group"):
        TorchReducer()


# ---------------------------------------------------------------------------------------------
# The command under torchrun, and without it


CLI_TRAIN = ["train", "--task", "reverse", "--task-size", "300", "--hidden", "16", "--embed", "8", "--batch-size", "27",
             "--no-progress", "--lr", "0.01", "--out", "m.s2s", "--checkpoint", "c.ckpt"]
# the environment variables of torchrun that a plain run must not inherit from whoever runs the tests
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")

# A run of the command that says whether it imported torch (a guard on sys.modules after main()).
WITHOUT_TORCH = """
import sys
from s2sext.cli import main
status = main(sys.argv[1:])
sys.stdout.flush()
print("torch imported:", sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")) != [])
sys.exit(status)
"""


def _command(directory, argv, env=None):
    import subprocess
    import sys

    environ = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARIABLES}
    environ.update(env or {})
    done = subprocess.run([sys.executable, *argv], cwd=directory, env=environ, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout, done.stderr


def _torchrun(directory, *argv):
    return _command(directory, ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                                "-m", "s2sext", *CLI_TRAIN, *argv])


def _checkpoint_history(path):
    return Seq2Seq.load(path, return_extra=True)[1]["history"]


@pytest.mark.slow
def test_cli_under_torchrun_trains_resumes_and_speaks_once(tmp_path):
    single, parallel = tmp_path / "single", tmp_path / "parallel"
    single.mkdir()
    parallel.mkdir()
    out, _ = _command(single, ["-c", WITHOUT_TORCH, *CLI_TRAIN, "--epochs", "3", "--threads", "1"])
    assert "torch imported: False" in out

    out, err = _torchrun(parallel, "--epochs", "2")
    epoch_lines = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epoch_lines] == ["epoch 1", "epoch 2"], err
    assert [line.split(":")[0] for line in out.splitlines()] == ["data", "model", "vocabulary", "best epoch 2"], out
    out, err = _torchrun(parallel, "--epochs", "3", "--resume", "c.ckpt")
    assert [line for line in err.splitlines() if line.startswith(("epoch ", "resumed"))][1].startswith("epoch 3:"), err
    assert out.count("best epoch") == 1 and out.startswith("resuming c.ckpt"), out

    expected, got = _checkpoint_history(single / "c.ckpt"), _checkpoint_history(parallel / "c.ckpt")
    assert [h["epoch"] for h in got] == [1, 2, 3]
    for mine, theirs in zip(got, expected):
        for key in ("train_loss", "train_token_accuracy", "valid_loss"):
            assert mine[key] == pytest.approx(theirs[key], rel=RELATIVE), key
    one, two = Seq2Seq.load(single / "m.s2s"), Seq2Seq.load(parallel / "m.s2s")
    for name, value in one.params.items():
        np.testing.assert_allclose(two.params[name], value, rtol=1e-4, atol=1e-6)  # the losses' drift, in weights


def test_one_process_under_torchrun_variables_does_not_import_torch(tmp_path):
    out, err = _command(tmp_path, ["-c", WITHOUT_TORCH, *CLI_TRAIN, "--epochs", "1", "--threads", "1"],
                        env={"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"})
    assert "torch imported: False" in out and "epoch 1:" in err


def test_cli_refuses_a_world_size_that_is_no_integer(monkeypatch, capsys):
    from s2sext.cli import main

    for name, value in (("RANK", "0"), ("WORLD_SIZE", "two"), ("LOCAL_RANK", "0")):
        monkeypatch.setenv(name, value)
    assert main(CLI_TRAIN) == 2
    err = capsys.readouterr().err
    assert err == "s2sext: error: the environment variable WORLD_SIZE must be an integer; got 'two'\n"


# ---------------------------------------------------------------------------------------------
# s2sext.torch modules under DistributedDataParallel

DDP_STEPS, DDP_BATCH = 20, 8


class _TinyTagger(torch.nn.Module):
    """Embedding -> s2sext.torch.LSTM -> general attention of the last state over the outputs ->
    a class per sequence."""

    def __init__(self):
        import s2sext.torch as st

        super().__init__()
        self.embed = torch.nn.Embedding(12, 5, dtype=torch.float64)
        self.lstm = st.LSTM(5, 7, batch_first=True, dtype=torch.float64)
        self.attention = st.Attention("general", 7, dtype=torch.float64)
        self.out = torch.nn.Linear(14, 3, dtype=torch.float64)

    def forward(self, tokens, lengths):
        outputs, (h, _) = self.lstm(self.embed(tokens))
        context, _ = self.attention(outputs, h[-1], lengths=lengths)
        return self.out(torch.cat([context, h[-1]], -1))


def _ddp_batches():
    """One batch, DDP_STEPS times (a model fitting it shows a steadily falling loss)."""
    generator = torch.Generator().manual_seed(5)
    tokens = torch.randint(0, 12, (DDP_BATCH, 6), generator=generator)
    lengths = torch.randint(1, 7, (DDP_BATCH,), generator=generator)
    return [(tokens, lengths, tokens[:, 0] % 3)] * DDP_STEPS  # the class: the first token's, mod 3


def _ddp_losses(rank=0, world=1):
    """The global batch's loss at each step of training the tagger on this rank's equal share of
    every batch (DDP averages the gradients, and the loss is a mean over equal shares)."""
    torch.manual_seed(0)
    model = _TinyTagger()
    wrapped = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    optimizer = torch.optim.Adam(wrapped.parameters(), lr=0.05)
    losses = []
    share = DDP_BATCH // world
    for tokens, lengths, labels in _ddp_batches():
        rows = slice(rank * share, (rank + 1) * share)
        loss = torch.nn.functional.cross_entropy(wrapped(tokens[rows], lengths[rows]), labels[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total = loss.detach().clone()
        if world > 1:
            dist.all_reduce(total)
            total /= world
        losses.append(total.item())
    return losses, [p.detach().clone() for p in model.parameters()]


def _ddp_worker(rank, world, directory):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{directory}/rendezvous", rank=rank, world_size=world)
    try:
        losses, params = _ddp_losses(rank, world)
        torch.save({"losses": losses, "params": params}, os.path.join(directory, f"ddp{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_s2sext_torch_modules_under_ddp_equal_one_process(tmp_path):
    mp.spawn(_ddp_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    single_losses, single_params = _ddp_losses()
    assert single_losses[-1] < 0.7 * single_losses[0]  # it learns, so the comparison is of a moving run
    for rank in range(2):
        got = torch.load(tmp_path / f"ddp{rank}.pt")
        # float64 throughout: the two runs differ only in where the batch's mean is summed
        np.testing.assert_allclose(got["losses"], single_losses, rtol=1e-10)
        for mine, theirs in zip(got["params"], single_params):
            torch.testing.assert_close(mine, theirs, rtol=1e-9, atol=1e-12)


def test_recording_reducer_keeps_the_losses_and_rejects_a_non_reducer():
    recording = RecordingReducer(SingleProcess())
    assert (recording.rank, recording.world_size) == (0, 1)
    assert recording.reduce({}, 0.25, 4, 3) == (0.25, 4, 3)
    assert recording.losses == [0.25]
    with pytest.raises(TypeError, match="inner must be a gradient reducer.*int has no rank, world_size, shard"):
        RecordingReducer(3)
