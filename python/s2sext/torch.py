"""s2sext's kernels as differentiable PyTorch operations, drop-in modules on top of them, and
conversion of PyTorch-trained weights into s2sext models.

Importing this module imports torch; ``import s2sext`` never does. CPU tensors of float32 or
float64 only: anything else raises instead of being copied to another device or dtype silently.

* Functions (``torch.autograd.Function``): :class:`LSTMFunction` (a padded sequence with lengths),
  :class:`LSTMCellFunction`, :class:`AttentionWeightFunction`, :class:`WeightSumFunction`; each
  forward and backward is one C++ kernel of :mod:`s2sext.ops`.
* Modules: :class:`LSTM` (``torch.nn.LSTM``'s constructor, parameter names, shapes, inputs and
  outputs, ``PackedSequence`` included, so ``load_state_dict(nn_lstm.state_dict())`` works) and
  :class:`Attention` (every score kind).
* Weights: :func:`seq2seq_from_state_dict` / :func:`seq2seq_to_state_dict` map a PyTorch model's
  state dict onto :class:`s2sext.Seq2Seq` and back (see ``DEFAULT_NAMES``), and
  :func:`convert_gate_order` converts LSTM weights from Keras's (i, f, c, o) or "Deep Learning from
  Scratch 2"'s (f, g, i, o, transposed) layouts to PyTorch's (i, f, g, o).
"""

from __future__ import annotations

import math

try:
    import torch
    from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence
except ImportError as exc:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "s2sext.torch needs PyTorch: pip install torch (any version >= 2.1; the CPU build is enough)"
    ) from exc

import numpy as np

from . import ops

__all__ = [
    "LSTMFunction",
    "LSTMCellFunction",
    "AttentionWeightFunction",
    "WeightSumFunction",
    "LSTM",
    "Attention",
    "convert_gate_order",
    "seq2seq_from_state_dict",
    "seq2seq_to_state_dict",
    "DEFAULT_NAMES",
]


# ---------------------------------------------------------------------------------------------
# Tensors <-> numpy, with the checks every Function makes


def _check(name, t, dtype=None):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise ValueError(f"{name} is on {t.device}; s2sext's kernels run on the CPU (move it with .cpu())")
    if t.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name} has dtype {t.dtype}; s2sext's kernels take float32 or float64")
    if dtype is not None and t.dtype != dtype:
        raise TypeError(f"{name} has dtype {t.dtype}, but the first input is {dtype}; use one dtype throughout")
    return t.detach().numpy()


def _out(array):
    return torch.from_numpy(np.ascontiguousarray(array))


def _grad(t):
    return None if t is None else t.detach().contiguous().numpy()


def _lengths(lengths, B):
    """None, or the integers [B] of a tensor, array or list (TypeError/ValueError naming lengths)."""
    if lengths is None:
        return None
    if isinstance(lengths, torch.Tensor):
        lengths = lengths.detach().cpu().numpy()
    arr = np.asarray(lengths)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"lengths must hold integers, got dtype {arr.dtype}")
    if arr.shape != (B,):
        raise ValueError(f"lengths must have shape ({B},) (one per batch row), got shape {arr.shape}")
    return arr.astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Functions


class LSTMFunction(torch.autograd.Function):
    """``hs, hT, cT = LSTMFunction.apply(x [B,S,I], h0 [B,H], c0 [B,H], w_ih [4H,I], w_hh [4H,H],
    b [4H], lengths [B] or None)`` with :func:`s2sext.ops.lstm_forward`'s semantics (state carried
    past a length, outputs zero there)."""

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b, lengths=None):
        dtype = x.dtype
        xn = _check("x", x)
        args = [_check(n, t, dtype) for n, t in (("h0", h0), ("c0", c0), ("w_ih", w_ih), ("w_hh", w_hh), ("b", b))]
        hs, hT, cT, cache = ops.lstm_forward(xn, *args, _lengths(lengths, x.shape[0]))
        ctx.cache = cache
        return _out(hs), _out(hT), _out(cT)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dhs, dhT, dcT):
        dx, dh0, dc0, dw_ih, dw_hh, db = ops.lstm_backward(_grad(dhs), _grad(dhT), _grad(dcT), ctx.cache)
        return _out(dx), _out(dh0), _out(dc0), _out(dw_ih), _out(dw_hh), _out(db), None


class LSTMCellFunction(torch.autograd.Function):
    """``h1, c1 = LSTMCellFunction.apply(x [B,I], h0 [B,H], c0 [B,H], w_ih, w_hh, b)``:
    ``torch.nn.LSTMCell``'s equations with one bias ``b = bias_ih + bias_hh``."""

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b):
        dtype = x.dtype
        xn = _check("x", x)
        args = [_check(n, t, dtype) for n, t in (("h0", h0), ("c0", c0), ("w_ih", w_ih), ("w_hh", w_hh), ("b", b))]
        h1, c1, cache = ops.lstm_cell_forward(xn, *args)
        ctx.cache = cache
        return _out(h1), _out(c1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dh1, dc1):
        grads = ops.lstm_cell_backward(_grad(dh1), _grad(dc1), ctx.cache)
        return tuple(_out(g) for g in grads)


class AttentionWeightFunction(torch.autograd.Function):
    """``a = AttentionWeightFunction.apply(hs [B,S,H], q [B,H] or [B,T,H], kind, lengths, *params)``:
    the masked softmax of :func:`s2sext.ops.attention_weight_forward`'s scores."""

    @staticmethod
    def forward(ctx, hs, q, kind, lengths, *params):
        dtype = hs.dtype
        hsn = _check("hs", hs)
        qn = _check("q", q, dtype)
        pn = tuple(_check(f"params[{i}]", p, dtype) for i, p in enumerate(params))
        a, cache = ops.attention_weight_forward(hsn, qn, kind, pn, _lengths(lengths, hs.shape[0]))
        ctx.cache = cache
        return _out(a)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, da):
        dhs, dq, dparams = ops.attention_weight_backward(_grad(da), ctx.cache)
        return (_out(dhs), _out(dq), None, None, *(_out(d) for d in dparams))


class WeightSumFunction(torch.autograd.Function):
    """``c = WeightSumFunction.apply(hs [B,S,H], a [B,S] or [B,T,S])``: ``c = sum_s a_s hs_s``."""

    @staticmethod
    def forward(ctx, hs, a):
        hsn = _check("hs", hs)
        an = _check("a", a, hs.dtype)
        ctx.save_for_backward(hs, a)
        return _out(ops.weight_sum_forward(hsn, an))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dc):
        hs, a = ctx.saved_tensors
        dhs, da = ops.weight_sum_backward(_grad(dc), hs.numpy(), a.numpy())
        return _out(dhs), _out(da)


# ---------------------------------------------------------------------------------------------
# Modules


def _reverse_within(x, lengths):
    """x [B, S, ...] with each row reversed within its length (padding in place); its own inverse."""
    B, S = x.shape[0], x.shape[1]
    t = torch.arange(S).unsqueeze(0)
    L = torch.as_tensor(lengths, dtype=torch.long).unsqueeze(1)
    index = torch.where(t < L, L - 1 - t, t)
    return x[torch.arange(B).unsqueeze(1), index]


class LSTM(torch.nn.Module):
    """A drop-in for ``torch.nn.LSTM`` running on s2sext's kernels.

    Same constructor (``input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
    dropout=0.0, bidirectional=False``; ``proj_size`` must be 0), same parameters
    (``weight_ih_l0``, ``bias_hh_l1_reverse``, ...), same inputs (a tensor or a
    ``PackedSequence``, optional ``(h_0, c_0)``) and outputs (``output, (h_n, c_n)``).
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__()
        if proj_size:
            raise ValueError("s2sext.torch.LSTM does not support proj_size (LSTM with projections)")
        if device is not None and torch.device(device).type != "cpu":
            raise ValueError(f"s2sext.torch.LSTM runs on the CPU; got device={device}")
        if dtype is not None and dtype not in (torch.float32, torch.float64):
            raise TypeError(f"s2sext.torch.LSTM supports float32 and float64; got dtype={dtype}")
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not 0 <= float(dropout) < 1:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size = bidirectional, 0
        directions = 2 if bidirectional else 1
        kw = {"dtype": dtype or torch.get_default_dtype()}
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * directions
            for suffix in ("", "_reverse")[:directions]:
                G = 4 * hidden_size
                setattr(self, f"weight_ih_l{layer}{suffix}", torch.nn.Parameter(torch.empty(G, layer_input, **kw)))
                setattr(self, f"weight_hh_l{layer}{suffix}", torch.nn.Parameter(torch.empty(G, hidden_size, **kw)))
                if bias:
                    setattr(self, f"bias_ih_l{layer}{suffix}", torch.nn.Parameter(torch.empty(G, **kw)))
                    setattr(self, f"bias_hh_l{layer}{suffix}", torch.nn.Parameter(torch.empty(G, **kw)))
        self.reset_parameters()

    def reset_parameters(self):
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            torch.nn.init.uniform_(p, -bound, bound)

    def flatten_parameters(self):
        """A no-op, for code written for torch.nn.LSTM (whose cuDNN path wants one weight buffer)."""

    def extra_repr(self):
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, bias={self.bias}, "
                f"batch_first={self.batch_first}, dropout={self.dropout}, bidirectional={self.bidirectional}")

    def _weights(self, layer, suffix):
        w_ih = getattr(self, f"weight_ih_l{layer}{suffix}")
        w_hh = getattr(self, f"weight_hh_l{layer}{suffix}")
        if self.bias:
            b = getattr(self, f"bias_ih_l{layer}{suffix}") + getattr(self, f"bias_hh_l{layer}{suffix}")
        else:
            b = torch.zeros(w_ih.shape[0], dtype=w_ih.dtype)
        return w_ih, w_hh, b

    def forward(self, input, hx=None):
        packed = isinstance(input, PackedSequence)
        if packed:
            x, lengths = pad_packed_sequence(input, batch_first=True)  # rows in the original order
            lengths = lengths.to(torch.long)
        else:
            if not isinstance(input, torch.Tensor) or input.dim() not in (2, 3):
                raise ValueError("input must be a 3-D tensor, a 2-D unbatched one, or a PackedSequence; got "
                                 f"{getattr(input, 'shape', type(input).__name__)}")
            if input.dim() == 2:  # unbatched, as torch.nn.LSTM accepts: [S, I] -> one batch row
                hx1 = None if hx is None else tuple(t.unsqueeze(1) for t in hx)
                out, (h_n, c_n) = self.forward(input.unsqueeze(0 if self.batch_first else 1), hx1)
                return out.squeeze(0 if self.batch_first else 1), (h_n.squeeze(1), c_n.squeeze(1))
            x = input if self.batch_first else input.transpose(0, 1)
            lengths = None
        _check("input", x)
        B, S, I = x.shape
        if I != self.input_size:
            raise ValueError(f"input has {I} features; this LSTM was built with input_size={self.input_size}")
        D, H = (2 if self.bidirectional else 1), self.hidden_size
        if hx is None:
            h0 = torch.zeros(self.num_layers * D, B, H, dtype=x.dtype)
            c0 = torch.zeros_like(h0)
        else:
            h0, c0 = hx
            for name, t in (("h_0", h0), ("c_0", c0)):
                if tuple(t.shape) != (self.num_layers * D, B, H):
                    raise ValueError(f"{name} has shape {tuple(t.shape)}; expected {(self.num_layers * D, B, H)}")
        x = x.contiguous()
        h_n, c_n = [], []
        lengths_np = None if lengths is None else lengths.numpy()
        for layer in range(self.num_layers):
            outputs = []
            for d, suffix in enumerate(("", "_reverse")[:D]):
                w_ih, w_hh, b = self._weights(layer, suffix)
                index = layer * D + d
                if d == 0:
                    hs, hT, cT = LSTMFunction.apply(x, h0[index], c0[index], w_ih, w_hh, b, lengths_np)
                else:
                    lens = lengths if lengths is not None else torch.full((B,), S, dtype=torch.long)
                    x_rev = _reverse_within(x, lens)
                    hs, hT, cT = LSTMFunction.apply(x_rev, h0[index], c0[index], w_ih, w_hh, b, lengths_np)
                    hs = _reverse_within(hs, lens)
                outputs.append(hs)
                h_n.append(hT)
                c_n.append(cT)
            x = outputs[0] if D == 1 else torch.cat(outputs, dim=2)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = torch.nn.functional.dropout(x, self.dropout, training=True)
        h_n, c_n = torch.stack(h_n), torch.stack(c_n)
        if packed:
            order = input.sorted_indices
            data = x if order is None else x[order]
            sorted_lengths = lengths if order is None else lengths[order]
            repacked = pack_padded_sequence(data, sorted_lengths, batch_first=True, enforce_sorted=True)
            out = PackedSequence(repacked.data, repacked.batch_sizes, input.sorted_indices, input.unsorted_indices)
            return out, (h_n, c_n)
        return (x if self.batch_first else x.transpose(0, 1)), (h_n, c_n)


class Attention(torch.nn.Module):
    """Attention on s2sext's kernels: ``context, weights = attention(hs [B,S,H], q [B,H] or
    [B,T,H], lengths=None)``; kinds ``dot``, ``scaled_dot``, ``general`` (``w_a [H,H]``), ``concat``
    (``w_q, w_k [A,H]``, ``v [A]``), ``location`` (``w_a [max_source_length, H]``)."""

    def __init__(self, kind, hidden_size, attention_size=None, max_source_length=None, dtype=None):
        super().__init__()
        if kind not in ops.ATTENTION_KINDS:
            raise ValueError(f"kind must be one of {', '.join(ops.ATTENTION_KINDS)}, got {kind!r}")
        self.kind, self.hidden_size = kind, hidden_size
        kw = {"dtype": dtype or torch.get_default_dtype()}
        H, A = hidden_size, attention_size or hidden_size
        bound = 1.0 / math.sqrt(H)
        if kind == "general":
            self.w_a = torch.nn.Parameter(torch.empty(H, H, **kw).uniform_(-bound, bound))
        elif kind == "location":
            if not max_source_length:
                raise ValueError("location attention needs max_source_length")
            self.w_a = torch.nn.Parameter(torch.empty(max_source_length, H, **kw).uniform_(-bound, bound))
        elif kind == "concat":
            self.w_q = torch.nn.Parameter(torch.empty(A, H, **kw).uniform_(-bound, bound))
            self.w_k = torch.nn.Parameter(torch.empty(A, H, **kw).uniform_(-bound, bound))
            self.v = torch.nn.Parameter(torch.empty(A, **kw).uniform_(-bound, bound))

    def params(self):
        return {"dot": (), "scaled_dot": (), "general": (self.w_a,) if self.kind == "general" else (),
                "location": (self.w_a,) if self.kind == "location" else (),
                "concat": (self.w_q, self.w_k, self.v) if self.kind == "concat" else ()}[self.kind]

    def forward(self, hs, q, lengths=None):
        lengths_np = None if lengths is None else _lengths(lengths, hs.shape[0])
        a = AttentionWeightFunction.apply(hs, q, self.kind, lengths_np, *self.params())
        return WeightSumFunction.apply(hs, a), a


# ---------------------------------------------------------------------------------------------
# Weight layouts and state dicts


def convert_gate_order(weight, layout):
    """LSTM weights or biases from another library's gate layout to PyTorch's (i, f, g, o).

    ``layout="keras"``: Keras/TensorFlow kernels ``[in, 4H]`` with gates (i, f, c, o) -> ``[4H, in]``.
    ``layout="dlfs2"``: "Deep Learning from Scratch 2" ``Wx``/``Wh`` ``[in, 4H]`` with gates
    (f, g, i, o) -> ``[4H, in]``. A bias ``[4H]`` is only reordered. Returns a numpy array.
    """
    w = np.asarray(weight)
    if w.ndim not in (1, 2) or w.shape[-1] % 4:
        raise ValueError(f"weight must be [in, 4H] or [4H] with 4H divisible by 4; got shape {w.shape}")
    H = w.shape[-1] // 4
    order = {"keras": (0, 1, 2, 3), "dlfs2": (2, 0, 1, 3)}  # source block of i, f, g, o
    if layout not in order:
        raise ValueError(f"layout must be 'keras' or 'dlfs2', got {layout!r}")
    blocks = [w[..., k * H:(k + 1) * H] for k in order[layout]]
    out = np.concatenate(blocks, axis=-1)
    return np.ascontiguousarray(out.T if out.ndim == 2 else out)


# Default names of a PyTorch seq2seq made of nn.Embedding, nn.LSTM (encoder and decoder),
# nn.Linear and attention parameters: s2sext name -> PyTorch state-dict name. An LSTM entry names
# the nn.LSTM's prefix; its weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k} + bias_hh_l{k} (and
# _reverse) become encoder.l{k}.w_ih, .w_hh, .b. Decoders written with nn.LSTMCell per layer map
# with decoder_cells="decoder.cells.{k}" instead.
DEFAULT_NAMES = {
    "src_embed": "encoder.embedding.weight",
    "tgt_embed": "decoder.embedding.weight",
    "encoder": "encoder.lstm",
    "decoder": "decoder.lstm",
    "bridge.h.weight": "bridge_h.weight",
    "bridge.h.bias": "bridge_h.bias",
    "bridge.c.weight": "bridge_c.weight",
    "bridge.c.bias": "bridge_c.bias",
    "bridge.memory.weight": "bridge_memory.weight",
    "attention.w_a": "attention.w_a",
    "attention.w_q": "attention.w_q",
    "attention.w_k": "attention.w_k",
    "attention.v": "attention.v",
    "combine.weight": "decoder.combine.weight",
    "combine.bias": "decoder.combine.bias",
    "out.weight": "decoder.out.weight",
    "out.bias": "decoder.out.bias",
}


def _lstm_names(prefix, layer, reverse, cells):
    if cells:
        base = prefix.format(k=layer)
        return f"{base}.weight_ih", f"{base}.weight_hh", f"{base}.bias_ih", f"{base}.bias_hh"
    s = "_reverse" if reverse else ""
    return (f"{prefix}.weight_ih_l{layer}{s}", f"{prefix}.weight_hh_l{layer}{s}", f"{prefix}.bias_ih_l{layer}{s}",
            f"{prefix}.bias_hh_l{layer}{s}")


def _mapping(config, names, decoder_cells):
    """s2sext parameter -> (PyTorch names, how): how is 'copy' or 'sum' (an LSTM's two biases)."""
    from .model import parameter_shapes

    unknown = set(names or {}) - set(DEFAULT_NAMES)
    if unknown:
        raise ValueError(f"names has keys that are not s2sext parts: {sorted(unknown)} (see DEFAULT_NAMES)")
    names = {**DEFAULT_NAMES, **(names or {})}
    out = {}
    for param in parameter_shapes(config):
        part, _, leaf = param.partition(".l") if param.startswith(("encoder.", "decoder.")) else (param, "", "")
        if leaf:
            which = "encoder" if param.startswith("encoder.") else "decoder"
            layer_text, _, kind = leaf.partition(".")
            reverse = layer_text.endswith("_reverse")
            layer = int(layer_text.replace("_reverse", ""))
            cells = which == "decoder" and decoder_cells is not None
            prefix = decoder_cells if cells else names[which]
            w_ih, w_hh, b_ih, b_hh = _lstm_names(prefix, layer, reverse, cells)
            out[param] = {"w_ih": ((w_ih,), "copy"), "w_hh": ((w_hh,), "copy"), "b": ((b_ih, b_hh), "sum")}[kind]
        else:
            out[param] = ((names[param],), "copy")
    return out


def seq2seq_from_state_dict(state_dict, src_vocab, tgt_vocab, names=None, decoder_cells=None, strict=True,
                            ignore_prefixes=(), **config):
    """An :class:`s2sext.Seq2Seq` holding a PyTorch model's weights.

    ``config`` takes :class:`s2sext.Seq2Seq`'s keyword arguments (``embed_size``, ``hidden_size``,
    ``num_layers``, ``bidirectional``, ``attention``, ``attention_style``, ``input_feeding``,
    ``max_source_length``, tokenizers, ``reverse_source``); ``names`` overrides entries of
    ``DEFAULT_NAMES``; ``decoder_cells`` (e.g. ``"decoder.cells.{k}"``) reads a decoder made of one
    ``nn.LSTMCell`` per layer. LSTM biases are summed (``b = bias_ih + bias_hh``). A missing name or a
    wrong shape raises ``KeyError``/``ValueError`` naming both parameters. With ``strict`` (as
    ``load_state_dict``), state-dict entries the mapping does not use raise ``ValueError`` too, except
    names starting with one of ``ignore_prefixes`` (e.g. tied copies of weights).
    """
    from .model import Seq2Seq, parameter_shapes

    model = Seq2Seq(src_vocab, tgt_vocab, **config)
    shapes = parameter_shapes(model.config)
    mapping = _mapping(model.config, names, decoder_cells)
    if strict:
        used = {name for sources, _ in mapping.values() for name in sources}
        unused = [k for k in state_dict if k not in used and not k.startswith(tuple(ignore_prefixes))]
        if unused:
            raise ValueError(f"state dict entries that no s2sext parameter takes: {unused} "
                             "(a different architecture? pass strict=False to drop them)")
    for param, (sources, how) in mapping.items():
        values = []
        for name in sources:
            if name not in state_dict:
                raise KeyError(f"state dict has no {name!r} (for s2sext parameter {param!r})")
            value = state_dict[name]
            if isinstance(value, torch.Tensor):
                if value.dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
                    raise TypeError(f"{name!r} has dtype {value.dtype}; expected a float tensor")
                value = value.detach().cpu().to(torch.float32).numpy()
            values.append(np.asarray(value))
        value = values[0] if how == "copy" else values[0] + values[1]
        if value.shape != shapes[param]:
            raise ValueError(f"{sources[0]!r} has shape {value.shape}; s2sext parameter {param!r} needs {shapes[param]}")
        model.params[param][...] = value
    return model


def seq2seq_to_state_dict(model, names=None, decoder_cells=None):
    """The inverse of :func:`seq2seq_from_state_dict`: PyTorch name -> tensor (float32). An LSTM's
    ``b`` goes to ``bias_ih`` and ``bias_hh`` is zero, so importing the result gives ``model``'s
    weights exactly."""
    state = {}
    for param, (targets, how) in _mapping(model.config, names, decoder_cells).items():
        value = torch.from_numpy(np.array(model.params[param]))
        state[targets[0]] = value
        if how == "sum":
            state[targets[1]] = torch.zeros_like(value)
    return state
