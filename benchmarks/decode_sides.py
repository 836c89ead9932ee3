"""The sides of the decoding benchmark (bench_decode.py): its configurations, s2sext's compiled
dtypes, and the peers, all with the s2sext model's weights -- a PyTorch twin run eagerly and as
TorchScript, its ONNX export run by ONNX Runtime and by OpenVINO, an eager PyTorch beam search, and the
physical reference (the matrix-vector products a decode must do, and nothing else).
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass


SOS, EOS = 1, 2
EOS_BIAS = -1e4  # out.bias[<eos>] on every side: no side picks <eos>, so all run T argmax-fed steps
BATCH = 32
BEAM = 5
OPSET = 17


@dataclass(frozen=True)
class Config:
    name: str
    V: int
    E: int
    H: int
    S: int
    T: int

    @property
    def shape(self) -> str:
        return f"V={self.V} E={self.E} H={self.H} S={self.S} T={self.T}"


CONFIGS = {
    "dates": Config("dates", V=59, E=16, H=256, S=29, T=10),
    "nmt": Config("nmt", V=8000, E=256, H=512, S=30, T=30),
}

# Names of the sides (rows of the tables, bars of the chart).
OURS, OURS_BF16, OURS_INT8 = "s2sext", "s2sext bf16", "s2sext int8"
EAGER, SCRIPT, ORT, OPENVINO = "torch eager", "TorchScript", "ONNX Runtime", "OpenVINO"
DTYPES = ("float32", "bfloat16", "int8")  # the dtypes of model.compile, in the reports' order
OUR_SIDES = {"float32": OURS, "bfloat16": OURS_BF16, "int8": OURS_INT8}
PEERS = (EAGER, SCRIPT, ORT, OPENVINO)
REF_OURS, REF_NUMPY = "reference (our GEMV)", "reference (numpy GEMV)"
PROBE_SENTENCE = "September 27, 1994"


# --------------------------------------------------------------------------------------------------
# s2sext's dtypes


def compile_dtype(model, dtype: str):
    """(the compiled decoder, "") or (None, "unavailable: <why>"): a dtype this build cannot compile
    (int8 before it exists raises ValueError) is a row that says so, not a crash."""
    try:
        return model.compile(dtype=dtype), ""
    except (ValueError, TypeError, NotImplementedError, RuntimeError) as e:
        return None, f"unavailable: {type(e).__name__}: {e}".splitlines()[0]


# --------------------------------------------------------------------------------------------------
# the PyTorch peers


def torch_peers(torch):
    """The PyTorch modules, defined here because torch is imported only after the thread settings."""
    nn = torch.nn
    Tensor = torch.Tensor

    class GreedyLoop(nn.Module):
        """Encoder nn.LSTM, then `steps` argmax-fed steps of LSTMCell + dot attention + tanh(W_c[c;h])."""

        def __init__(self, twin):
            super().__init__()
            self.src_embed = twin.src_embed
            self.encoder = twin.encoder
            self.tgt_embed = twin.tgt_embed
            self.cell = twin.decoder[0]
            self.combine = twin.combine
            self.out = twin.out

        def forward(self, src: Tensor, steps: int) -> Tensor:
            memory, (h_n, c_n) = self.encoder(self.src_embed(src))  # memory [B, S, H]
            h, c = h_n[0], c_n[0]
            y = torch.full((src.shape[0],), 1, dtype=torch.long)  # <sos>
            ys = []
            for _ in range(steps):
                h, c = self.cell(self.tgt_embed(y), (h, c))
                a = torch.softmax(torch.bmm(memory, h.unsqueeze(2)), dim=1)  # [B, S, 1]
                context = torch.bmm(a.transpose(1, 2), memory).squeeze(1)  # [B, H]
                o = torch.tanh(self.combine(torch.cat([context, h], dim=1)))
                y = self.out(o).argmax(dim=1)
                ys.append(y)
            return torch.stack(ys, dim=1)

    class EncoderPart(nn.Module):
        def __init__(self, twin):
            super().__init__()
            self.src_embed = twin.src_embed
            self.encoder = twin.encoder

        def forward(self, src: Tensor):
            memory, (h_n, c_n) = self.encoder(self.src_embed(src))
            return memory, h_n[0], c_n[0]

    class StepPart(nn.Module):
        def __init__(self, twin):
            super().__init__()
            self.tgt_embed = twin.tgt_embed
            self.cell = twin.decoder[0]
            self.combine = twin.combine
            self.out = twin.out

        def forward(self, y: Tensor, h: Tensor, c: Tensor, memory: Tensor):
            h, c = self.cell(self.tgt_embed(y), (h, c))
            a = torch.softmax(torch.bmm(memory, h.unsqueeze(2)), dim=1)
            context = torch.bmm(a.transpose(1, 2), memory).squeeze(1)
            o = torch.tanh(self.combine(torch.cat([context, h], dim=1)))
            return self.out(o), h, c

    def beam_search(loop: GreedyLoop, src: Tensor, K: int, steps: int):
        """Batch-1 beam search with the K beams as rows; exactly `steps` steps.
        Returns (best tokens int64 [steps], its log-probability)."""
        memory, (h_n, c_n) = loop.encoder(loop.src_embed(src))
        S, H = memory.shape[1], memory.shape[2]
        memory = memory.expand(K, S, H).contiguous()
        h, c = h_n[0].expand(K, H).contiguous(), c_n[0].expand(K, H).contiguous()
        scores = torch.full((K,), -math.inf)
        scores[0] = 0.0  # one live hypothesis at the start
        y = torch.full((K,), 1, dtype=torch.long)
        V = loop.out.out_features
        tokens, parents = [], []
        for _ in range(steps):
            h, c = loop.cell(loop.tgt_embed(y), (h, c))
            a = torch.softmax(torch.bmm(memory, h.unsqueeze(2)), dim=1)
            context = torch.bmm(a.transpose(1, 2), memory).squeeze(1)
            o = torch.tanh(loop.combine(torch.cat([context, h], dim=1)))
            logp = torch.log_softmax(loop.out(o), dim=1)  # [K, V]
            scores, idx = (scores.unsqueeze(1) + logp).view(-1).topk(K)
            parent = torch.div(idx, V, rounding_mode="floor")
            y = idx - parent * V
            h, c = h.index_select(0, parent), c.index_select(0, parent)
            tokens.append(y)
            parents.append(parent)
        tok = torch.stack(tokens).tolist()
        par = torch.stack(parents).tolist()
        seq, slot = [], 0  # topk is sorted: slot 0 holds the best
        for t in range(steps - 1, -1, -1):
            seq.append(tok[t][slot])
            slot = par[t][slot]
        return seq[::-1], float(scores[0])

    return GreedyLoop, EncoderPart, StepPart, beam_search


def script_loop(torch, loop):
    """(the scripted and frozen module, how) or (None, the error): a failure is a row, not a crash."""
    with warnings.catch_warnings():
        # torch.jit.script is deprecated in this torch ("Please switch to torch.compile or
        # torch.export"); it still works, and the report says it is deprecated.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            scripted = torch.jit.script(loop.eval())
        except Exception as e:  # noqa: BLE001 - any failure means "no TorchScript row"
            return None, f"torch.jit.script failed: {type(e).__name__}: {e}".splitlines()[0]
        try:
            return torch.jit.freeze(scripted), "torch.jit.script + torch.jit.freeze"
        except Exception as e:  # noqa: BLE001 - freezing is an optimisation; keep the scripted module
            return scripted, f"torch.jit.script (freeze failed: {type(e).__name__})"


def export_onnx(torch, encoder, step, cfg: Config, directory: str):
    """Exports both parts with a dynamic batch axis; returns (encoder path, step path, exporter)."""
    src = torch.zeros((1, cfg.S), dtype=torch.long)
    y = torch.full((1,), SOS, dtype=torch.long)
    h = torch.zeros((1, cfg.H))
    memory = torch.zeros((1, cfg.S, cfg.H))
    enc_path = os.path.join(directory, f"{cfg.name}-encoder.onnx")
    step_path = os.path.join(directory, f"{cfg.name}-step.onnx")
    jobs = [
        (encoder, (src,), enc_path, ["src"], ["memory", "h", "c"],
         {"src": {0: "B"}, "memory": {0: "B"}, "h": {0: "B"}, "c": {0: "B"}}),
        (step, (y, h, h, memory), step_path, ["y", "h", "c", "memory"], ["logits", "h_out", "c_out"],
         {"y": {0: "B"}, "h": {0: "B"}, "c": {0: "B"}, "memory": {0: "B"}, "logits": {0: "B"},
          "h_out": {0: "B"}, "c_out": {0: "B"}}),
    ]
    exporter = "torch.onnx.export (default exporter)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter is deprecated, and says so
        for module, args, path, inputs, outputs, axes in jobs:
            kwargs = dict(input_names=inputs, output_names=outputs, dynamic_axes=axes,
                          opset_version=OPSET)
            if exporter.endswith("(default exporter)"):
                try:
                    torch.onnx.export(module, args, path, **kwargs)
                    continue
                except Exception as e:  # noqa: BLE001 - e.g. the dynamo exporter needs onnxscript
                    exporter = (f"torch.onnx.export(dynamo=False) (the default exporter failed: "
                                f"{type(e).__name__}: {str(e).splitlines()[0][:80]})")
            torch.onnx.export(module, args, path, dynamo=False, **kwargs)
    return enc_path, step_path, exporter


def ort_sessions(ort, enc_path, step_path, threads: int):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    providers = ["CPUExecutionProvider"]
    return (ort.InferenceSession(enc_path, opts, providers=providers),
            ort.InferenceSession(step_path, opts, providers=providers))


def ort_greedy(np, enc, step, src, steps: int):
    """The exported encoder once, then `steps` exported steps, argmax in numpy."""
    memory, h, c = enc.run(None, {"src": src})
    B = src.shape[0]
    y = np.full(B, SOS, np.int64)
    out = np.empty((B, steps), np.int64)
    for t in range(steps):
        logits, h, c = step.run(None, {"y": y, "h": h, "c": c, "memory": memory})
        y = logits.argmax(axis=1)
        out[:, t] = y
    return out


# --------------------------------------------------------------------------------------------------
# OpenVINO: the same exported graphs on its CPU plugin

# One thread, one stream, latency mode, and f32 inference precision: on CPUs with AVX512_BF16 or AMX the
# CPU plugin otherwise runs matrix products in bfloat16 by default, which would not be the float32
# graph the other peers run.
def openvino_config(threads: int) -> dict:
    return {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "f32", "ENABLE_HYPER_THREADING": False}


def openvino_sessions(ov, enc_path, step_path, cfg: Config, batch: int, threads: int):
    """(the greedy loop of the exported graphs reshaped to a static batch, the configuration as
    OpenVINO reports it back). A static shape is OpenVINO's recommended way to compile (the ONNX Runtime
    side keeps the dynamic axis)."""
    core = ov.Core()
    config = openvino_config(threads)
    enc = core.read_model(enc_path)
    enc.reshape({"src": [batch, cfg.S]})
    step = core.read_model(step_path)
    step.reshape({"y": [batch], "h": [batch, cfg.H], "c": [batch, cfg.H], "memory": [batch, cfg.S, cfg.H]})
    enc_c = core.compile_model(enc, "CPU", config)
    step_c = core.compile_model(step, "CPU", config)
    got = {k: str(step_c.get_property(k)) for k in config}
    return OpenVinoGreedy(enc_c.create_infer_request(), step_c.create_infer_request()), got


class OpenVinoGreedy:
    """As ort_greedy: the encoder once, then `steps` steps, argmax in numpy. The inputs are copied into
    the requests' own input tensors and the outputs read from theirs: passing fresh numpy arrays to
    `infer()` makes OpenVINO wrap or copy them into new tensors on every call, which cost more than the
    step itself at batch 1 (measured while writing this). The views below stay valid because nothing
    else sets these requests' tensors."""

    def __init__(self, enc, step):
        self.enc, self.step = enc, step
        self.src = enc.get_tensor("src").data
        self.y, self.h, self.c, self.memory = (step.get_tensor(n).data for n in ("y", "h", "c", "memory"))

    def __call__(self, np, src, steps: int):
        enc, step = self.enc, self.step
        self.src[...] = src
        enc.infer()
        self.memory[...] = enc.get_output_tensor(0).data
        self.h[...] = enc.get_output_tensor(1).data
        self.c[...] = enc.get_output_tensor(2).data
        self.y[...] = SOS
        out = np.empty((src.shape[0], steps), np.int64)
        for t in range(steps):
            step.infer()
            y = step.get_output_tensor(0).data.argmax(axis=1)
            out[:, t] = y
            self.y[...] = y
            self.h[...] = step.get_output_tensor(1).data
            self.c[...] = step.get_output_tensor(2).data
        return out


# --------------------------------------------------------------------------------------------------
# the physical reference


def reference_fns(np, ops, params, cfg: Config, src_row, uses_table: bool):
    """(ours, numpy, ours on 1x1 operands, numpy on 1x1 operands): the matrix-vector products of a
    batch-1 greedy decode over the model's weight matrices (see the module docstring)."""
    rng = np.random.default_rng(7)
    S, T, H, E = cfg.S, cfg.T, cfg.H, cfg.E

    def vec(n):
        return rng.uniform(-1, 1, n).astype(np.float32)

    X = np.ascontiguousarray(params["src_embed"][src_row])  # [S, E]
    memory = rng.uniform(-1, 1, (S, H)).astype(np.float32)  # the encoder's outputs stand in
    memory_t = np.ascontiguousarray(memory.T)  # [H, S]: the context as one more row-major GEMV
    mats = {
        "enc_w_ih": params["encoder.l0.w_ih"],  # [4H, E]
        "enc_w_hh": params["encoder.l0.w_hh"],  # [4H, H]
        "dec_w_ih": params["decoder.l0.w_ih"],  # [4H, E]
        "dec_w_hh": params["decoder.l0.w_hh"],  # [4H, H]
        "combine": params["combine.weight"],  # [H, 2H]
        "out": params["out.weight"],  # [V, H]
    }
    h, e, a, ch, o = vec(H), vec(E), vec(S), vec(2 * H), vec(H)
    h1, e1, a1, ch1, o1 = (v[None] for v in (h, e, a, ch, o))

    def ours_with(m, X_, mem, mem_t, h1_, e1_, a1_, ch1_, o1_):
        lf = ops.linear_forward

        def run():
            lf(X_, m["enc_w_ih"])  # all S input products at once, as the encoder does
            for _ in range(S):
                lf(h1_, m["enc_w_hh"])
            for _ in range(T):
                if not uses_table:
                    lf(e1_, m["dec_w_ih"])
                lf(h1_, m["dec_w_hh"])
                lf(h1_, mem)  # scores [1, S]
                lf(a1_, mem_t)  # context [1, H]
                lf(ch1_, m["combine"])
                lf(o1_, m["out"])
        return run

    def numpy_with(m, X_, mem, h_, e_, a_, ch_, o_):
        dot = np.dot
        xw = np.empty((X_.shape[0], m["enc_w_ih"].shape[0]), np.float32)
        g = np.empty(m["enc_w_hh"].shape[0], np.float32)
        sc = np.empty(mem.shape[0], np.float32)
        ctx = np.empty(mem.shape[1], np.float32)
        oc = np.empty(m["combine"].shape[0], np.float32)
        lo = np.empty(m["out"].shape[0], np.float32)
        w_ih_t = m["enc_w_ih"].T

        def run():
            dot(X_, w_ih_t, out=xw)
            for _ in range(S):
                dot(m["enc_w_hh"], h_, out=g)
            for _ in range(T):
                if not uses_table:
                    dot(m["dec_w_ih"], e_, out=g)
                dot(m["dec_w_hh"], h_, out=g)
                dot(mem, h_, out=sc)
                dot(a_, mem, out=ctx)
                dot(m["combine"], ch_, out=oc)
                dot(m["out"], o_, out=lo)
        return run

    # The same calls on 1x1 operands: what the Python calls themselves cost.
    one = np.ones((1, 1), np.float32)
    tiny = {k: one for k in mats}
    one_v = np.ones(1, np.float32)
    return (ours_with(mats, X, memory, memory_t, h1, e1, a1, ch1, o1),
            numpy_with(mats, X, memory, h, e, a, ch, o),
            ours_with(tiny, one, one, one, one, one, one, one, one),
            numpy_with(tiny, one, one, one_v, one_v, one_v, one_v, one_v))
