"""The Seq2Seq model: an LSTM encoder, an LSTM decoder with optional attention, and their forward
and backward passes composed from the C++ kernels of :mod:`s2sext.ops` (numpy only, no torch).

The equations, parameter names and shapes are specified in ``docs/model.md``; this module follows
that page line by line. Letters: ``B`` batch, ``S`` source length, ``T`` decoder steps, ``E``
embedding size, ``H`` hidden size, ``V`` target vocabulary size.

Parts, importable on their own:

* :class:`Encoder` -- embedding, stacked (optionally bidirectional) LSTM, the bridge.
* :class:`Attention` -- the score kinds of :mod:`s2sext.ops` with their parameters.
* :class:`RecurrentDecoder` -- embedding, stacked LSTM, attention in Luong or Bahdanau style, the
  ``tanh(W_c [c; h])`` combine layer and the output layer; run all steps at once or step by step.
* :class:`Seq2Seq` -- the three together, with the loss, decoding, translation and files.

Every ``*_forward`` returns a cache that its ``*_backward`` consumes; gradients are accumulated
into a dict keyed by parameter name (``grads[name] += ...``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
import numpy as np

from . import ops
from .data import Vocab, get_tokenizer, short_repr

DTYPE = np.float32

ATTENTION_STYLES = ("luong", "bahdanau")
BRIDGES = ("linear", "concat")
COMBINE_ACTIVATIONS = ("tanh", "none")
# The configuration keys that a version-2 Seq2Seq header adds (docs/model-format.md): a model whose
# values are all these defaults is written as version 1, without them, byte for byte as before.
VERSION2_DEFAULTS = {"bridge": "linear", "combine_activation": "tanh", "attention_query_bias": False}


# ---------------------------------------------------------------------------------------------
# Small dense pieces (numpy; their products go through numpy's BLAS)


def _embed_backward(grad_table: np.ndarray, ids: np.ndarray, d_rows: np.ndarray) -> None:
    """grad_table[ids[i]] += d_rows[i] for every i (rows with the same id summed)."""
    ids = ids.reshape(-1)
    d_rows = d_rows.reshape(ids.size, -1)
    np.add.at(grad_table, ids, d_rows)


def _linear_backward(d_out, x, weight, grads, weight_name, bias_name=None, need_dx=True, y=None,
                     activation="none"):
    """Backward of ``y = act(x @ weight.T (+ bias))``; accumulates into ``grads``, returns dL/dx."""
    dx, dw, db = ops.linear_backward(d_out, x, weight, y, activation, need_dx)
    grads[weight_name] += dw
    if bias_name is not None:
        grads[bias_name] += db
    return dx


def aligned_array(values, dtype=DTYPE, alignment=64):
    """A C-contiguous copy of ``values`` whose data starts on an ``alignment``-byte boundary (the
    kernels' row loads are then aligned)."""
    values = np.asarray(values, dtype=dtype)
    raw = np.empty(values.nbytes + alignment, np.uint8)
    offset = (-raw.ctypes.data) % alignment
    out = raw[offset:offset + values.nbytes].view(dtype).reshape(values.shape)
    out[...] = values
    return out


def _dropout_mask(shape, rate, rng):
    """Inverted dropout: 0 with probability ``rate``, else ``1/(1-rate)``; None when off."""
    if rate <= 0.0 or rng is None:
        return None
    keep = rng.random(shape, dtype=np.float32) >= rate
    return keep.astype(DTYPE) / DTYPE(1.0 - rate)


def _reverse_index(lengths: np.ndarray, steps: int):
    """Index arrays that reverse each sequence within its length, ``x[rb, rt]``, padding in place.

    ``rt[b, t] = lengths[b] - 1 - t`` for ``t < lengths[b]``, else ``t``; the map is its own
    inverse, so the same gather reverses the outputs back and routes gradients.
    """
    t = np.arange(steps)[None, :]
    lengths = lengths.reshape(-1, 1)
    rt = np.where(t < lengths, lengths - 1 - t, t)
    rb = np.broadcast_to(np.arange(lengths.shape[0])[:, None], rt.shape)
    return rb, rt


# ---------------------------------------------------------------------------------------------
# Configuration


@dataclass
class Config:
    """Everything that fixes the model's shapes and behaviour (saved in the model file)."""

    src_vocab_size: int
    tgt_vocab_size: int
    embed_size: int = 16
    hidden_size: int = 256
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    attention: str | None = "dot"
    attention_style: str = "luong"
    input_feeding: bool = False
    max_source_length: int = 128
    src_tokenizer: str = "char"
    tgt_tokenizer: str = "char"
    reverse_source: bool = False
    bridge: str = "linear"
    combine_activation: str = "tanh"
    attention_query_bias: bool = False

    def validate(self) -> None:
        """The rules of docs/model-format.md ("The Seq2Seq header"), which the C++ loader applies
        too: types, ranges, and sizes whose every parameter fits a model file (below 2**63 bytes)."""
        def positive_int(name, minimum=1):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not minimum <= value < 2**63:
                raise ValueError(f"{name} must be an integer in [{minimum}, 2**63); got {short_repr(value)}")

        for name in ("embed_size", "hidden_size", "num_layers", "max_source_length"):
            positive_int(name)
        positive_int("src_vocab_size", 5)
        positive_int("tgt_vocab_size", 5)
        # compared as given, not through float(): a huge int would overflow
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (float, int)) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be a number in [0, 1); got {short_repr(self.dropout)}")
        if self.attention is not None and self.attention not in ops.ATTENTION_KINDS:
            raise ValueError(
                f"attention must be None or one of {', '.join(ops.ATTENTION_KINDS)}; got {short_repr(self.attention)}"
            )
        if self.attention_style not in ATTENTION_STYLES:
            raise ValueError(f"attention_style must be 'luong' or 'bahdanau'; got {short_repr(self.attention_style)}")
        if self.attention is None and self.attention_style != "luong":
            raise ValueError("attention_style='bahdanau' needs an attention kind; got attention=None")
        if self.input_feeding and (self.attention is None or self.attention_style != "luong"):
            raise ValueError("input_feeding needs Luong-style attention (attention_style='luong', attention set)")
        for name in ("bidirectional", "input_feeding", "reverse_source", "attention_query_bias"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name} must be a bool; got {short_repr(getattr(self, name))}")
        if self.bridge not in BRIDGES:
            raise ValueError(f"bridge must be 'linear' or 'concat'; got {short_repr(self.bridge)}")
        if self.bridge == "concat" and not (self.bidirectional and self.hidden_size % 2 == 0):
            raise ValueError(
                "bridge='concat' needs bidirectional=True and an even hidden_size (each direction has "
                f"hidden_size/2 units); got bidirectional={short_repr(self.bidirectional)}, "
                f"hidden_size={short_repr(self.hidden_size)}"
            )
        if self.combine_activation not in COMBINE_ACTIVATIONS:
            raise ValueError(f"combine_activation must be 'tanh' or 'none'; got {short_repr(self.combine_activation)}")
        if self.combine_activation != "tanh" and self.attention is None:
            raise ValueError("combine_activation='none' needs an attention kind (without attention there is no combine layer)")
        if self.attention_query_bias and self.attention != "concat":
            raise ValueError(f"attention_query_bias needs attention='concat'; got attention={short_repr(self.attention)}")
        get_tokenizer(self.src_tokenizer)
        get_tokenizer(self.tgt_tokenizer)
        # Layers past the second repeat the second's shapes, so two layers show every shape (the
        # check stays O(1) for any num_layers).
        for name, shape in iter_parameter_shapes(self, max_layers=2):
            if math.prod(shape) * DTYPE().itemsize >= 2**63:
                raise ValueError(f"the configuration's parameter {short_repr(name)} of shape {shape} is too large to store")

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @property
    def file_version(self) -> int:
        """The Seq2Seq header version this configuration is saved as: 1 when every key of
        ``VERSION2_DEFAULTS`` has its default, else 2."""
        return 1 if all(getattr(self, k) == v for k, v in VERSION2_DEFAULTS.items()) else 2

    def as_file_dict(self) -> dict:
        """The configuration as a model file stores it: version 1 omits ``VERSION2_DEFAULTS``'s keys."""
        d = self.as_dict()
        if self.file_version == 1:
            for k in VERSION2_DEFAULTS:
                del d[k]
        return d

    @classmethod
    def from_dict(cls, d: dict, version: int = 2) -> "Config":
        """A validated Config from a dict with exactly the keys of a saved configuration of this
        header ``version`` (version 1: without ``VERSION2_DEFAULTS``'s keys, which take their defaults)."""
        if not isinstance(d, dict):
            raise TypeError(f"the configuration must be a dict; got {type(d).__name__}")
        fields = [k for k in cls.__dataclass_fields__ if version >= 2 or k not in VERSION2_DEFAULTS]
        unknown = set(d) - set(fields)
        if unknown:
            listed = ", ".join(short_repr(k) for k in sorted(unknown)[:8]) + (f", ... ({len(unknown)} keys)"
                                                                             if len(unknown) > 8 else "")
            raise ValueError(f"unknown model configuration keys for version {version}: {listed}")
        missing = [k for k in fields if k not in d]
        if missing:
            raise ValueError(f"the model configuration lacks the keys {missing}")
        config = cls(**d)
        config.validate()
        return config

    @property
    def encoder_hidden_size(self) -> int:
        """Each encoder direction's hidden size: hidden_size, or half of it with bridge='concat'."""
        return self.hidden_size // 2 if self.bridge == "concat" else self.hidden_size

    @property
    def decoder_input_size(self) -> int:
        extra = self.hidden_size if (self.input_feeding or self.attention_style == "bahdanau") else 0
        return self.embed_size + extra if self.attention is not None else self.embed_size


def parameter_shapes(config: Config) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every parameter, in a fixed order (``docs/model.md``)."""
    return dict(iter_parameter_shapes(config))


def iter_parameter_shapes(config: Config, max_layers: int | None = None):
    """The (name, shape) pairs of :func:`parameter_shapes` one at a time, so that a caller may stop
    early (a loader stops at the first one its file lacks); ``max_layers`` stops each LSTM stack
    after that many layers."""
    E, H, L = config.embed_size, config.hidden_size, config.num_layers
    He = config.encoder_hidden_size
    if max_layers is not None:
        L = min(L, max_layers)
    D = 2 if config.bidirectional else 1
    yield "src_embed", (config.src_vocab_size, E)
    yield "tgt_embed", (config.tgt_vocab_size, E)
    for k in range(L):
        in_size = E if k == 0 else D * He
        for suffix in ("", "_reverse") if config.bidirectional else ("",):
            p = f"encoder.l{k}{suffix}"
            yield f"{p}.w_ih", (4 * He, in_size)
            yield f"{p}.w_hh", (4 * He, He)
            yield f"{p}.b", (4 * He,)
    if config.bidirectional and config.bridge == "linear":
        yield "bridge.h.weight", (H, 2 * H)
        yield "bridge.h.bias", (H,)
        yield "bridge.c.weight", (H, 2 * H)
        yield "bridge.c.bias", (H,)
        if config.attention is not None:
            yield "bridge.memory.weight", (H, 2 * H)
    for k in range(L):
        in_size = config.decoder_input_size if k == 0 else H
        yield f"decoder.l{k}.w_ih", (4 * H, in_size)
        yield f"decoder.l{k}.w_hh", (4 * H, H)
        yield f"decoder.l{k}.b", (4 * H,)
    if config.attention == "general":
        yield "attention.w_a", (H, H)
    elif config.attention == "location":
        yield "attention.w_a", (config.max_source_length, H)
    elif config.attention == "concat":
        yield "attention.w_q", (H, H)
        yield "attention.w_k", (H, H)
        yield "attention.v", (H,)
        if config.attention_query_bias:
            yield "attention.b_q", (H,)
    if config.attention is not None:
        yield "combine.weight", (H, 2 * H)
        yield "combine.bias", (H,)
    yield "out.weight", (config.tgt_vocab_size, H)
    yield "out.bias", (config.tgt_vocab_size,)


def init_parameters(config: Config, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """PyTorch's default initialisation: embeddings N(0, 1), everything else U(-1/sqrt(fan_in), +)."""
    params = {}
    for name, shape in parameter_shapes(config).items():
        if name.endswith("_embed"):
            value = rng.standard_normal(shape)
        else:
            if name.startswith("encoder."):
                fan_in = config.encoder_hidden_size
            elif name.startswith("decoder.") or name == "attention.v":
                fan_in = config.hidden_size
            elif name.endswith(".bias"):
                fan_in = 2 * config.hidden_size if not name.startswith("out.") else config.hidden_size
            else:
                fan_in = shape[-1]
            bound = 1.0 / math.sqrt(fan_in)
            value = rng.uniform(-bound, bound, shape)
            if name.endswith(".b"):  # one LSTM bias stands for PyTorch's two
                value = value + rng.uniform(-bound, bound, shape)
        params[name] = aligned_array(value)
    return params


# ---------------------------------------------------------------------------------------------
# Encoder


@dataclass
class EncoderState:
    """What the decoder needs from the encoder, plus the caches of the encoder's backward."""

    memory: np.ndarray | None  # [B, S, H] (None without attention)
    lengths: np.ndarray  # [B] int64
    h0: list  # per layer [B, H]
    c0: list
    caches: dict = field(default_factory=dict)


class Encoder:
    """Source embedding, ``num_layers`` LSTMs (each optionally bidirectional) and the bridge."""

    def __init__(self, config: Config):
        self.config = config

    def forward(self, params, src, lengths, rng=None) -> EncoderState:
        """src int [B, S], lengths int [B] (1..S) -> EncoderState. ``rng`` enables dropout."""
        cfg = self.config
        x = params["src_embed"][src]  # [B, S, E]
        S = src.shape[1]
        rev = _reverse_index(lengths, S) if cfg.bidirectional else None
        layer_caches, dropout_masks = [], []
        finals_h, finals_c = [], []
        for k in range(cfg.num_layers):
            p = f"encoder.l{k}"
            hs_f, hT_f, cT_f, cache_f = ops.lstm_forward(
                x, None, None, params[f"{p}.w_ih"], params[f"{p}.w_hh"], params[f"{p}.b"], lengths
            )
            if cfg.bidirectional:
                rb, rt = rev
                hs_r, hT_r, cT_r, cache_r = ops.lstm_forward(
                    x[rb, rt], None, None, params[f"{p}_reverse.w_ih"], params[f"{p}_reverse.w_hh"],
                    params[f"{p}_reverse.b"], lengths,
                )
                x = np.concatenate([hs_f, hs_r[rb, rt]], axis=-1)
                finals_h.append(np.concatenate([hT_f, hT_r], axis=-1))
                finals_c.append(np.concatenate([cT_f, cT_r], axis=-1))
                layer_caches.append((cache_f, cache_r))
            else:
                x = hs_f
                finals_h.append(hT_f)
                finals_c.append(cT_f)
                layer_caches.append((cache_f,))
            mask = _dropout_mask(x.shape, cfg.dropout, rng) if k < cfg.num_layers - 1 else None
            if mask is not None:
                x = x * mask
            dropout_masks.append(mask)
        caches = {"layers": layer_caches, "dropout": dropout_masks, "src": src, "top": x}
        if cfg.bidirectional and cfg.bridge == "linear":
            h0 = [ops.linear_forward(f, params["bridge.h.weight"], params["bridge.h.bias"]) for f in finals_h]
            c0 = [ops.linear_forward(f, params["bridge.c.weight"], params["bridge.c.bias"]) for f in finals_c]
            caches["finals"] = (finals_h, finals_c)
            memory = ops.linear_forward(x, params["bridge.memory.weight"]) if cfg.attention is not None else None
        else:
            h0, c0 = finals_h, finals_c
            memory = x if cfg.attention is not None else None
        return EncoderState(memory=memory, lengths=lengths, h0=h0, c0=c0, caches=caches)

    def backward(self, params, state: EncoderState, d_memory, d_h0, d_c0, grads) -> None:
        """Accumulate parameter gradients given dL/dmemory [B,S,H] (or None), dL/dh0, dL/dc0."""
        cfg = self.config
        H = cfg.encoder_hidden_size  # one direction's size: the halves are sliced there
        caches = state.caches
        top = caches["top"]
        if cfg.bidirectional and cfg.bridge == "linear":
            finals_h, finals_c = caches["finals"]
            d_finals_h = [
                _linear_backward(d, f, params["bridge.h.weight"], grads, "bridge.h.weight", "bridge.h.bias")
                for d, f in zip(d_h0, finals_h)
            ]
            d_finals_c = [
                _linear_backward(d, f, params["bridge.c.weight"], grads, "bridge.c.weight", "bridge.c.bias")
                for d, f in zip(d_c0, finals_c)
            ]
            d_x = None
            if d_memory is not None:
                d_x = _linear_backward(d_memory, top, params["bridge.memory.weight"], grads, "bridge.memory.weight")
        else:
            d_finals_h, d_finals_c = d_h0, d_c0
            d_x = d_memory
        B, S = caches["src"].shape
        rev = _reverse_index(state.lengths, S) if cfg.bidirectional else None
        for k in reversed(range(cfg.num_layers)):
            mask = caches["dropout"][k]
            if d_x is not None and mask is not None:
                d_x = d_x * mask
            p = f"encoder.l{k}"
            if cfg.bidirectional:
                cache_f, cache_r = caches["layers"][k]
                rb, rt = rev
                d_hs_f = d_x[..., :H] if d_x is not None else None
                d_hs_r = d_x[..., H:][rb, rt] if d_x is not None else None
                dh, dc = d_finals_h[k], d_finals_c[k]
                dx_f, _, _, dw_ih, dw_hh, db = ops.lstm_backward(d_hs_f, dh[:, :H], dc[:, :H], cache_f)
                dx_r, _, _, dw_ih_r, dw_hh_r, db_r = ops.lstm_backward(d_hs_r, dh[:, H:], dc[:, H:], cache_r)
                grads[f"{p}_reverse.w_ih"] += dw_ih_r
                grads[f"{p}_reverse.w_hh"] += dw_hh_r
                grads[f"{p}_reverse.b"] += db_r
                d_x = dx_f + dx_r[rb, rt]
            else:
                (cache_f,) = caches["layers"][k]
                d_x, _, _, dw_ih, dw_hh, db = ops.lstm_backward(d_x, d_finals_h[k], d_finals_c[k], cache_f)
            grads[f"{p}.w_ih"] += dw_ih
            grads[f"{p}.w_hh"] += dw_hh
            grads[f"{p}.b"] += db
        _embed_backward(grads["src_embed"], caches["src"], d_x)


# ---------------------------------------------------------------------------------------------
# Attention


class Attention:
    """``a = softmax_masked(score(memory, q))`` and ``c = sum_s a_s memory_s`` (``s2sext.ops``)."""

    PARAM_NAMES = {
        "dot": (),
        "scaled_dot": (),
        "general": ("attention.w_a",),
        "location": ("attention.w_a",),
        "concat": ("attention.w_q", "attention.w_k", "attention.v"),
    }

    def __init__(self, kind: str, query_bias: bool = False):
        self.kind = kind
        self.names = self.PARAM_NAMES[kind] + (("attention.b_q",) if query_bias else ())

    def forward(self, params, memory, query, lengths):
        """memory [B,S,H], query [B,H] or [B,T,H] -> a [B,S] / [B,T,S], context like query, cache."""
        a, cache = ops.attention_weight_forward(
            memory, query, self.kind, tuple(params[n] for n in self.names), lengths
        )
        context = ops.weight_sum_forward(memory, a)
        return a, context, (cache, memory, a)

    def backward(self, params, d_context, cache, grads, d_a=None):
        """-> (dL/dmemory, dL/dquery); parameter gradients accumulated into ``grads``."""
        weight_cache, memory, a = cache
        d_memory, d_a_sum = ops.weight_sum_backward(d_context, memory, a)
        if d_a is not None:
            d_a_sum = d_a_sum + d_a
        d_memory_scores, d_query, d_params = ops.attention_weight_backward(d_a_sum, weight_cache)
        for name, d in zip(self.names, d_params):
            grads[name] += d
        if self.kind != "location":
            d_memory = d_memory + d_memory_scores
        return d_memory, d_query


# ---------------------------------------------------------------------------------------------
# Decoder


class RecurrentDecoder:
    """Target embedding, stacked LSTM, attention (Luong or Bahdanau), combine and output layers."""

    def __init__(self, config: Config):
        self.config = config
        self.attention = (Attention(config.attention, config.attention_query_bias)
                          if config.attention is not None else None)

    # -- the combine and output layers, shared by both paths -------------------------------------

    def _output_forward(self, params, h_top, context):
        """h_top, context [..., H] -> (o [..., H] the attentional state or h_top, logits [..., V],
        the combine layer's input [..., 2H] or None)."""
        if self.attention is None:
            o, combined = h_top, None
        else:
            combined = np.concatenate([context, h_top], axis=-1)
            o = ops.linear_forward(combined, params["combine.weight"], params["combine.bias"],
                                   self.config.combine_activation)
        logits = ops.linear_forward(o, params["out.weight"], params["out.bias"])
        return o, logits, combined

    def _output_backward(self, params, d_logits, d_o_extra, combined, o, grads):
        """-> (dL/dh_top, dL/dcontext or None)."""
        d_o = _linear_backward(d_logits, o, params["out.weight"], grads, "out.weight", "out.bias")
        if d_o_extra is not None:
            d_o = d_o + d_o_extra
        if self.attention is None:
            return d_o, None
        H = self.config.hidden_size
        d_combined = _linear_backward(d_o, combined, params["combine.weight"], grads, "combine.weight",
                                      "combine.bias", y=o, activation=self.config.combine_activation)
        return d_combined[..., H:], d_combined[..., :H]

    # -- all steps at once: Luong without input feeding, every input given ----------------------

    def can_run_all_steps(self) -> bool:
        cfg = self.config
        return cfg.attention is None or (cfg.attention_style == "luong" and not cfg.input_feeding)

    def forward_all_steps(self, params, enc: EncoderState, tgt_in, tgt_lengths, rng=None):
        """tgt_in int [B, T] -> logits [B, T, V], attention [B, T, S] or None, cache."""
        cfg = self.config
        x = params["tgt_embed"][tgt_in]
        lstm_caches, masks = [], []
        for k in range(cfg.num_layers):
            p = f"decoder.l{k}"
            x, _, _, cache = ops.lstm_forward(
                x, enc.h0[k], enc.c0[k], params[f"{p}.w_ih"], params[f"{p}.w_hh"], params[f"{p}.b"], tgt_lengths
            )
            lstm_caches.append(cache)
            mask = _dropout_mask(x.shape, cfg.dropout, rng) if k < cfg.num_layers - 1 else None
            if mask is not None:
                x = x * mask
            masks.append(mask)
        h_top = x
        a = context = att_cache = None
        if self.attention is not None:
            a, context, att_cache = self.attention.forward(params, enc.memory, h_top, enc.lengths)
        o, logits, combined = self._output_forward(params, h_top, context)
        cache = (tgt_in, lstm_caches, masks, combined, att_cache, o)
        return logits, a, cache

    def backward_all_steps(self, params, enc: EncoderState, d_logits, cache, grads):
        """-> (dL/dmemory or None, dL/dh0 per layer, dL/dc0 per layer)."""
        cfg = self.config
        tgt_in, lstm_caches, masks, combined, att_cache, o = cache
        d_h, d_context = self._output_backward(params, d_logits, None, combined, o, grads)
        d_memory = None
        if self.attention is not None:
            d_memory, d_query = self.attention.backward(params, d_context, att_cache, grads)
            d_h = d_h + d_query
        d_h0 = [None] * cfg.num_layers
        d_c0 = [None] * cfg.num_layers
        for k in reversed(range(cfg.num_layers)):
            if masks[k] is not None:
                d_h = d_h * masks[k]
            p = f"decoder.l{k}"
            d_h, d_h0[k], d_c0[k], dw_ih, dw_hh, db = ops.lstm_backward(d_h, None, None, lstm_caches[k])
            grads[f"{p}.w_ih"] += dw_ih
            grads[f"{p}.w_hh"] += dw_hh
            grads[f"{p}.b"] += db
        _embed_backward(grads["tgt_embed"], tgt_in, d_h)
        return d_memory, d_h0, d_c0

    # -- one step at a time ----------------------------------------------------------------------

    def initial_step_state(self, enc: EncoderState):
        """The state before step 0: (h per layer, c per layer, previous attentional state or None)."""
        cfg = self.config
        B = enc.h0[0].shape[0]
        feed = np.zeros((B, cfg.hidden_size), enc.h0[0].dtype) if cfg.input_feeding else None
        return list(enc.h0), list(enc.c0), feed

    def step_forward(self, params, enc: EncoderState, tokens, state, rng=None):
        """One decoder step: tokens int [B] -> logits [B, V], attention [B, S] or None, new state,
        cache (for :meth:`step_backward`)."""
        cfg = self.config
        h, c, feed = state
        e = params["tgt_embed"][tokens]  # [B, E]
        a = context = att_cache = None
        bahdanau = self.attention is not None and cfg.attention_style == "bahdanau"
        if bahdanau:
            a, context, att_cache = self.attention.forward(params, enc.memory, h[-1], enc.lengths)
            x = np.concatenate([e, context], axis=1)
        elif feed is not None:
            x = np.concatenate([e, feed], axis=1)
        else:
            x = e
        new_h, new_c, cell_caches, masks = [], [], [], []
        for k in range(cfg.num_layers):
            p = f"decoder.l{k}"
            hk, ck, cell_cache = ops.lstm_cell_forward(
                x, h[k], c[k], params[f"{p}.w_ih"], params[f"{p}.w_hh"], params[f"{p}.b"]
            )
            new_h.append(hk)
            new_c.append(ck)
            cell_caches.append(cell_cache)
            mask = _dropout_mask(hk.shape, cfg.dropout, rng) if k < cfg.num_layers - 1 else None
            x = hk * mask if mask is not None else hk
            masks.append(mask)
        h_top = x
        if self.attention is not None and not bahdanau:
            a, context, att_cache = self.attention.forward(params, enc.memory, h_top, enc.lengths)
        o, logits, combined = self._output_forward(params, h_top, context)
        new_feed = o if cfg.input_feeding else None
        cache = (tokens, cell_caches, masks, combined, att_cache, o, bahdanau)
        return logits, a, (new_h, new_c, new_feed), cache

    def step_backward(self, params, d_logits, d_state, cache, grads):
        """Backward of one step. ``d_state`` = (dh per layer, dc per layer, d_feed) w.r.t. the step's
        output state (entries may be None); returns (dL/dmemory or None, d_state w.r.t. its input)."""
        cfg = self.config
        tokens, cell_caches, masks, combined, att_cache, o, bahdanau = cache
        d_h_next, d_c_next, d_feed = d_state
        d_h_top, d_context = self._output_backward(params, d_logits, d_feed, combined, o, grads)
        d_memory = None
        if self.attention is not None and not bahdanau:
            d_memory, d_query = self.attention.backward(params, d_context, att_cache, grads)
            d_h_top = d_h_top + d_query
        d_h_prev = [None] * cfg.num_layers
        d_c_prev = [None] * cfg.num_layers
        d_x = d_h_top
        for k in reversed(range(cfg.num_layers)):
            if masks[k] is not None:
                d_x = d_x * masks[k]
            if d_h_next[k] is not None:
                d_x = d_x + d_h_next[k]
            p = f"decoder.l{k}"
            d_x, d_h_prev[k], d_c_prev[k], dw_ih, dw_hh, db = ops.lstm_cell_backward(
                d_x, d_c_next[k], cell_caches[k]
            )
            grads[f"{p}.w_ih"] += dw_ih
            grads[f"{p}.w_hh"] += dw_hh
            grads[f"{p}.b"] += db
        E = cfg.embed_size
        d_feed_prev = None
        if bahdanau:
            d_memory, d_query_prev = self.attention.backward(params, d_context + d_x[:, E:], att_cache, grads)
            d_h_prev[-1] = d_h_prev[-1] + d_query_prev
        elif cfg.input_feeding:
            d_feed_prev = d_x[:, E:]
        _embed_backward(grads["tgt_embed"], tokens, d_x[:, :E])
        return d_memory, (d_h_prev, d_c_prev, d_feed_prev)


# ---------------------------------------------------------------------------------------------
# Loss


def masked_cross_entropy(logits, targets, lengths):
    """Mean cross-entropy over the valid steps of a batch and its gradient.

    logits float [B, T, V], targets int [B, T], lengths int [B] -> (loss, dL/dlogits [B, T, V],
    number of valid tokens, number of correctly predicted valid tokens).
    """
    B, T, V = logits.shape
    valid = np.arange(T)[None, :] < lengths[:, None]  # [B, T]
    count = int(valid.sum())
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=-1, keepdims=True)
    log_total = np.log(total)
    target_logit = np.take_along_axis(shifted, targets[..., None], axis=-1)[..., 0]
    nll = (log_total[..., 0] - target_logit) * valid
    loss = float(nll.sum(dtype=np.float64) / count)
    d_logits = exp / total
    np.put_along_axis(d_logits, targets[..., None], np.take_along_axis(d_logits, targets[..., None], -1) - 1, -1)
    d_logits *= (valid / count)[..., None].astype(logits.dtype)
    correct = int(((logits.argmax(axis=-1) == targets) & valid).sum())
    return loss, d_logits, count, correct


# ---------------------------------------------------------------------------------------------
# The model


def encode_texts(texts, src_vocab, src_tokenizer, reverse_source):
    """Strings -> (src_ids int [B, S], lengths int [B]): tokenized, reversed if asked, looked up."""
    from .data import pad_batch

    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not a single string")
    tokenizer = get_tokenizer(src_tokenizer)
    seqs = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] must be a str; got {type(text).__name__}")
        tokens = tokenizer.tokenize(text)
        if not tokens:
            raise ValueError(f"texts[{i}] is empty after tokenisation")
        if reverse_source:
            tokens = tokens[::-1]
        seqs.append(src_vocab.encode(tokens))
    if not seqs:
        raise ValueError("texts is empty")
    return pad_batch(seqs)


def decode_ids(ids, tgt_vocab, tgt_tokenizer) -> str:
    """Target ids -> text (stops at ``<eos>``, drops ``<pad>``/``<sos>``)."""
    return get_tokenizer(tgt_tokenizer).detokenize(tgt_vocab.decode([int(i) for i in ids]))


def _as_ids(name, value, ndim):
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array; got dtype {arr.dtype}")
    if arr.ndim != ndim:
        expected = "[B, S]" if ndim == 2 else "[B]"
        raise ValueError(f"{name} must have shape {expected}; got shape {arr.shape}")
    return arr.astype(np.int64, copy=False)


class Seq2Seq:
    """An attention seq2seq model trained and run with the C++ kernels (no torch).

    Parameters
    ----------
    src_vocab, tgt_vocab : Vocab, list of str, or int
        Vocabularies (a list of tokens gets the four specials prepended; an int makes a vocabulary
        of that size with placeholder tokens).
    embed_size, hidden_size, num_layers : int
    bidirectional : bool
        Encoder directions concatenated and bridged to ``hidden_size`` by learned layers.
    dropout : float
        Between stacked LSTM layers (encoder and decoder), in training only.
    attention : None or str
        ``None`` (the encoder's last state is the only context) or one of ``ops.ATTENTION_KINDS``.
    attention_style : "luong" or "bahdanau"
    input_feeding : bool
        Luong only: feed the previous attentional state into the next step.
    seed : int
        Seeds the initial weights.
    max_source_length : int
        The longest source ``location`` attention accepts (its weight has this many rows).
    src_tokenizer, tgt_tokenizer : "char" or "word"
        Used by :meth:`translate`.
    reverse_source : bool
        :meth:`translate` reverses the source tokens (train with the same setting).
    bridge : "linear" or "concat"
        Bidirectional only. ``"linear"``: each direction has ``hidden_size`` units and learned
        layers map their concatenation to the decoder's state and memory. ``"concat"``: each
        direction has ``hidden_size / 2`` units (even ``hidden_size``), the decoder's initial
        state is ``[h_fwd; h_bwd]`` and the memory the concatenated outputs (OpenNMT-py's ``brnn``).
    combine_activation : "tanh" or "none"
        The activation of the combine layer ``act(W_c [c; h] + b_c)``; OpenNMT-py's ``mlp``
        attention has none.
    attention_query_bias : bool
        concat only: the score is ``v . tanh(W_q q + b_q + W_k k)`` with a learned ``attention.b_q``.
    """

    def __init__(self, src_vocab, tgt_vocab, embed_size=16, hidden_size=256, num_layers=1,
                 bidirectional=False, dropout=0.0, attention="dot", attention_style="luong",
                 input_feeding=False, seed=0, max_source_length=128, src_tokenizer="char",
                 tgt_tokenizer="char", reverse_source=False, bridge="linear", combine_activation="tanh",
                 attention_query_bias=False, *, _params=None):
        self.src_vocab = Vocab.coerce(src_vocab)
        self.tgt_vocab = Vocab.coerce(tgt_vocab)
        if attention == "none":
            attention = None
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float, np.floating)):
            raise TypeError(f"dropout must be a number in [0, 1); got {dropout!r}")
        if not 0 <= dropout < 1:  # before float(), which overflows for a huge int
            raise ValueError(f"dropout must be a number in [0, 1); got {dropout!r:.40}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed must be an integer; got {seed!r}")
        self.config = Config(
            src_vocab_size=len(self.src_vocab), tgt_vocab_size=len(self.tgt_vocab), embed_size=embed_size,
            hidden_size=hidden_size, num_layers=num_layers, bidirectional=bidirectional,
            dropout=float(dropout), attention=attention, attention_style=attention_style,
            input_feeding=input_feeding, max_source_length=max_source_length,
            src_tokenizer=src_tokenizer, tgt_tokenizer=tgt_tokenizer, reverse_source=reverse_source,
            bridge=bridge, combine_activation=combine_activation, attention_query_bias=attention_query_bias,
        )
        self.config.validate()
        self.params = _params if _params is not None else init_parameters(self.config, np.random.default_rng(seed))
        self.encoder = Encoder(self.config)
        self.decoder = RecurrentDecoder(self.config)

    # -- sizes and checks ------------------------------------------------------------------------

    @property
    def num_parameters(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    def _check_source(self, src, lengths):
        src = _as_ids("src_ids", src, 2)
        B, S = src.shape
        if B < 1 or S < 1:
            raise ValueError(f"src_ids must have shape [B, S] with B, S >= 1; got {src.shape}")
        if lengths is None:
            lengths = np.full(B, S, np.int64)
        else:
            lengths = _as_ids("lengths", lengths, 1)
            if lengths.shape != (B,):
                raise ValueError(f"lengths must have shape [B] = ({B},); got {lengths.shape}")
            if lengths.min() < 1 or lengths.max() > S:
                raise ValueError(f"lengths must lie in [1, S={S}]; got min {lengths.min()}, max {lengths.max()}")
        if src.min() < 0 or src.max() >= self.config.src_vocab_size:
            raise ValueError(
                f"src_ids must lie in [0, {self.config.src_vocab_size}) (the source vocabulary); "
                f"got min {src.min()}, max {src.max()}"
            )
        if self.config.attention == "location" and S > self.config.max_source_length:
            raise ValueError(
                f"src_ids has {S} steps; location attention accepts at most max_source_length="
                f"{self.config.max_source_length}"
            )
        return src, lengths

    # -- training --------------------------------------------------------------------------------

    def zero_grads(self) -> dict[str, np.ndarray]:
        return {name: np.zeros_like(p) for name, p in self.params.items()}

    def loss_and_grads(self, src, src_lengths, tgt_in, tgt_out, tgt_lengths, feed_prob=1.0, rng=None,
                       train=True, need_grads=True, force_step_path=False):
        """Loss and gradients on one batch.

        Parameters
        ----------
        src : int [B, S]; src_lengths : int [B]
        tgt_in : int [B, T]
            Decoder inputs, ``<sos> y_1 .. y_{T-1}`` (padded).
        tgt_out : int [B, T]
            Targets, ``y_1 .. y_n <eos>`` (padded).
        tgt_lengths : int [B]
            Valid steps per row (``n + 1``).
        feed_prob : float
            Teacher forcing probability: at each step after the first and for each row, the input
            is ``tgt_in`` with this probability, else the model's previous argmax prediction
            (scheduled sampling; no gradient flows through the choice).
        rng : numpy Generator or None
            Draws the sampling decisions and the dropout masks (dropout only when ``train``).

        Returns
        -------
        loss : float; grads : dict name -> array (None when not ``need_grads``);
        stats : dict with ``tokens``, ``correct``, ``fed_truth`` (fraction of inputs after the first
        step that were ground truth) and ``decoder_inputs`` (int [B, T], the tokens fed).
        """
        src, src_lengths = self._check_source(src, src_lengths)
        tgt_in = _as_ids("tgt_in", tgt_in, 2)
        tgt_out = _as_ids("tgt_out", tgt_out, 2)
        tgt_lengths = _as_ids("tgt_lengths", tgt_lengths, 1)
        B, T = tgt_in.shape
        if tgt_out.shape != (B, T) or tgt_lengths.shape != (B,) or src.shape[0] != B:
            raise ValueError(
                f"batch shapes disagree: src {src.shape}, tgt_in {tgt_in.shape}, tgt_out {tgt_out.shape}, "
                f"tgt_lengths {tgt_lengths.shape}"
            )
        if tgt_lengths.min() < 1 or tgt_lengths.max() > T:
            raise ValueError(f"tgt_lengths must lie in [1, T={T}]")
        for name, ids in (("tgt_in", tgt_in), ("tgt_out", tgt_out)):
            if ids.min() < 0 or ids.max() >= self.config.tgt_vocab_size:
                raise ValueError(f"{name} must lie in [0, {self.config.tgt_vocab_size}) (the target vocabulary)")
        drop_rng = rng if (train and self.config.dropout > 0) else None
        params = self.params
        # Rows sorted by source length, longest first: the LSTM kernels then skip finished rows at
        # each step (as packed sequences do). The loss is a mean over tokens, so order is free.
        order = np.argsort(-src_lengths, kind="stable")
        if np.any(order != np.arange(B)):
            src, src_lengths = src[order], src_lengths[order]
            tgt_in, tgt_out, tgt_lengths = tgt_in[order], tgt_out[order], tgt_lengths[order]
        enc = self.encoder.forward(params, src, src_lengths, drop_rng)
        grads = self.zero_grads() if need_grads else None
        fed_truth = 1.0
        decoder_inputs = tgt_in
        if feed_prob >= 1.0 and self.decoder.can_run_all_steps() and not force_step_path:
            logits, _, cache = self.decoder.forward_all_steps(params, enc, tgt_in, tgt_lengths, drop_rng)
            loss, d_logits, count, correct = masked_cross_entropy(logits, tgt_out, tgt_lengths)
            if need_grads:
                d_memory, d_h0, d_c0 = self.decoder.backward_all_steps(params, enc, d_logits, cache, grads)
                self.encoder.backward(params, enc, d_memory, d_h0, d_c0, grads)
        else:
            if feed_prob < 1.0 and rng is None:
                raise ValueError("scheduled sampling (feed_prob < 1) needs an rng")
            state = self.decoder.initial_step_state(enc)
            step_logits, step_caches = [], []
            tokens = tgt_in[:, 0]
            decoder_inputs = tgt_in.copy()
            fed = 0
            for t in range(T):
                if t > 0 and feed_prob < 1.0:
                    truth = rng.random(B) < feed_prob
                    fed += int(truth.sum())
                    tokens = np.where(truth, tgt_in[:, t], step_logits[-1].argmax(axis=-1))
                    decoder_inputs[:, t] = tokens
                elif t > 0:
                    tokens = tgt_in[:, t]
                    fed += B
                logits_t, _, state, cache = self.decoder.step_forward(params, enc, tokens, state, drop_rng)
                step_logits.append(logits_t)
                step_caches.append(cache)
            if T > 1:
                fed_truth = fed / (B * (T - 1))
            logits = np.stack(step_logits, axis=1)
            loss, d_logits, count, correct = masked_cross_entropy(logits, tgt_out, tgt_lengths)
            if need_grads:
                L = self.config.num_layers
                d_state = ([None] * L, [None] * L, None)
                d_memory = None
                for t in reversed(range(T)):
                    d_mem_t, d_state = self.decoder.step_backward(params, d_logits[:, t], d_state, step_caches[t], grads)
                    if d_mem_t is not None:
                        d_memory = d_mem_t if d_memory is None else d_memory + d_mem_t
                self.encoder.backward(params, enc, d_memory, d_state[0], d_state[1], grads)
        restored = np.empty_like(decoder_inputs)
        restored[order] = decoder_inputs
        stats = {"tokens": count, "correct": correct, "fed_truth": fed_truth, "decoder_inputs": restored}
        return loss, grads, stats

    # -- inference -------------------------------------------------------------------------------

    def encode(self, src_ids, lengths=None) -> EncoderState:
        """Run the encoder for inference (no dropout, caches kept only as the kernels return them)."""
        src, lengths = self._check_source(src_ids, lengths)
        return self.encoder.forward(self.params, src, lengths)

    def greedy(self, src_ids, lengths=None, max_length=50, min_length=0, return_attention=False):
        """Greedy decoding until ``<eos>``: int [B, S] -> int [B, T].

        Each row holds the chosen tokens up to and including ``<eos>`` and ``<pad>`` after it;
        ``T <= max_length`` is the longest row. ``<eos>`` is not chosen before step ``min_length``.
        With ``return_attention``, also returns the attention weights of the chosen output,
        float [B, T, S] (zeros without attention). Memory grows with the steps taken, not with
        ``max_length``. Arguments are checked as :class:`s2sext.Decoder` checks them
        (``decoding.check_lengths``), and a model whose weights could overflow float32 is refused
        (``decoding.check_float32_range``).
        """
        from .decoding import greedy_search

        return greedy_search(self, src_ids, lengths, max_length, min_length, return_attention)

    def beam_search(self, src_ids, lengths=None, beam_size=5, max_length=50, min_length=0, n_best=1,
                    length_penalty=0.0):
        """Beam search; see :func:`s2sext.decoding.beam_search` for the returned lists."""
        from .decoding import beam_search

        return beam_search(self, src_ids, lengths, beam_size, max_length, min_length, n_best, length_penalty)

    def encode_texts(self, texts):
        """Strings -> (src_ids int [B, S], lengths int [B]) with this model's tokenizer and vocab."""
        return encode_texts(texts, self.src_vocab, self.config.src_tokenizer, self.config.reverse_source)

    def decode_ids(self, ids) -> str:
        """Target ids -> text: stops at ``<eos>``, joined by the model's tokenizer."""
        return decode_ids(ids, self.tgt_vocab, self.config.tgt_tokenizer)

    def translate(self, texts, beam=1, n_best=1, max_length=50, min_length=0, length_penalty=0.0):
        """Strings in, strings out: a list of ``len(texts)`` strings, or with ``n_best > 1`` a list
        of lists of ``(text, score)``."""
        from .decoding import check_translate_args

        beam, n_best = check_translate_args(beam, n_best)
        src, lengths = self.encode_texts(texts)
        if beam == 1 and n_best == 1:
            ids = self.greedy(src, lengths, max_length, min_length)
            return [self.decode_ids(row) for row in ids]
        results = self.beam_search(src, lengths, beam, max_length, min_length, n_best, length_penalty)
        if n_best == 1:
            return [self.decode_ids(hyps[0]["tokens"]) if hyps else "" for hyps in results]
        return [[(self.decode_ids(h["tokens"]), h["score"]) for h in hyps] for hyps in results]

    def compile(self, dtype="float32"):
        """The compiled decoder (:class:`s2sext.Decoder`): encoder and decoding in C++, weights
        prepared once (``dtype="bfloat16"`` stores the LSTM, combine and output matrices in bfloat16)."""
        from .engine import Decoder

        return Decoder.from_model(self, dtype)

    # -- files -----------------------------------------------------------------------------------

    FILE_KIND = "s2sext-seq2seq"

    def file_header(self, extra: dict | None = None) -> dict:
        header = {
            "kind": self.FILE_KIND,
            "version": self.config.file_version,
            "config": self.config.as_file_dict(),
            "src_vocab": list(self.src_vocab.tokens),
            "tgt_vocab": list(self.tgt_vocab.tokens),
        }
        if extra:
            header["extra"] = extra
        return header

    def save(self, path, extra_tensors: dict | None = None, extra: dict | None = None) -> None:
        """Write weights, vocabularies and configuration to one file (``docs/model-format.md``);
        the file appears complete or not at all."""
        from .serialize import write_model_file

        tensors = dict(self.params)
        if extra_tensors:
            tensors.update(extra_tensors)
        write_model_file(path, self.file_header(extra), tensors)

    @classmethod
    def load(cls, path, return_extra=False):
        """Read a file written by :meth:`save`; raises ``ModelFileError`` (a ValueError) if the file
        is not a complete, consistent s2sext model."""
        from .serialize import ModelFileError, read_model_file

        header, tensors = read_model_file(path)
        try:
            model = cls.from_header(header, tensors)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"{path}: not a valid s2sext model: {exc}") from None
        if return_extra:
            extra_tensors = {k: v for k, v in tensors.items() if k not in model.params}
            return model, header.get("extra", {}), extra_tensors
        return model

    @classmethod
    def from_header(cls, header: dict, tensors: dict) -> "Seq2Seq":
        """The model a file's header and tensors describe, checked by the rules of
        docs/model-format.md ("The Seq2Seq header") before any array is copied; every check's
        work is bounded by the size of the header and of ``tensors``."""
        if not isinstance(header, dict) or header.get("kind") != cls.FILE_KIND:
            kind = header.get("kind") if isinstance(header, dict) else None
            raise ValueError(f"header kind is {kind!r:.60}, expected {cls.FILE_KIND!r}")
        version = header.get("version")
        if type(version) is not int or version not in (1, 2):
            raise ValueError(f"model version {version!r:.60} is not supported (expected the integer 1 or 2)")
        for key, kind in (("config", dict), ("src_vocab", list), ("tgt_vocab", list)):
            if not isinstance(header.get(key), kind):
                what = "an object" if kind is dict else "an array of tokens"
                raise ValueError(f"header {key!r} must be {what}; got {type(header.get(key)).__name__}")
        config = Config.from_dict(header["config"], version)
        src_vocab = Vocab(header["src_vocab"])
        tgt_vocab = Vocab(header["tgt_vocab"])
        if len(src_vocab) != config.src_vocab_size or len(tgt_vocab) != config.tgt_vocab_size:
            raise ValueError("vocabulary sizes disagree with the configuration")
        # Checked one at a time against the file's tensors, so a configuration that names more
        # parameters than the file holds (num_layers = 10**8) fails at the first missing one.
        found = []
        for name, shape in iter_parameter_shapes(config):
            value = tensors.get(name)
            if value is None:
                raise ValueError(f"parameter {name!r} is missing")
            if value.shape != shape or value.dtype != DTYPE:
                raise ValueError(f"parameter {name!r} has shape {value.shape} dtype {value.dtype}; expected {shape} float32")
            found.append((name, value))
        params = {name: aligned_array(value) for name, value in found}
        cfg = config.as_dict()
        del cfg["src_vocab_size"], cfg["tgt_vocab_size"]
        return cls(src_vocab, tgt_vocab, _params=params, **cfg)
