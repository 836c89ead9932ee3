"""The parts of the Seq2Seq model, their forward and backward passes composed from the C++ kernels
of :mod:`s2sext.ops` (numpy only, no torch): :class:`Encoder`, :class:`Attention`,
:class:`RecurrentDecoder` and the loss, :func:`masked_cross_entropy`.

The equations, parameter names and shapes are specified in ``docs/model.md``; this module follows
that page line by line. Letters: ``B`` batch, ``S`` source length, ``T`` decoder steps, ``E``
embedding size, ``H`` hidden size, ``V`` target vocabulary size.

* :class:`Encoder` -- embedding, stacked (optionally bidirectional) LSTM, the bridge.
* :class:`Attention` -- the score kinds of :mod:`s2sext.ops` with their parameters.
* :class:`RecurrentDecoder` -- embedding, stacked LSTM, attention in Luong or Bahdanau style, the
  ``tanh(W_c [c; h])`` combine layer and the output layer; run all steps at once or step by step.

Every ``*_forward`` returns a cache that its ``*_backward`` consumes; gradients are accumulated
into a dict keyed by parameter name (``grads[name] += ...``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import ops
from .config import Config
from .spec import DTYPE, attention_parameter_names

__all__ = ["EncoderState", "Encoder", "Attention", "RecurrentDecoder", "masked_cross_entropy"]


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

    def forward(self, params, src, lengths, rng=None, embed_dropout=0.0, embed_rng=None) -> EncoderState:
        """src int [B, S], lengths int [B] (1..S) -> EncoderState. ``rng`` enables the dropout
        between layers; ``embed_rng`` enables ``embed_dropout`` on the embedded source [B, S, E]."""
        cfg = self.config
        x = params["src_embed"][src]  # [B, S, E]
        embed_mask = _dropout_mask(x.shape, embed_dropout, embed_rng)
        if embed_mask is not None:
            x = x * embed_mask
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
        caches = {"layers": layer_caches, "dropout": dropout_masks, "src": src, "top": x, "embed_mask": embed_mask}
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
        # in the forward pass this was x = src_embed[src] * embed_mask, so d(src_embed row) = d_x * embed_mask
        if caches["embed_mask"] is not None:
            d_x = d_x * caches["embed_mask"]
        _embed_backward(grads["src_embed"], caches["src"], d_x)


# ---------------------------------------------------------------------------------------------
# Attention


class Attention:
    """``a = softmax_masked(score(memory, q))`` and ``c = sum_s a_s memory_s`` (``s2sext.ops``)."""

    def __init__(self, kind: str, query_bias: bool = False):
        self.kind = kind
        self.names = tuple(f"attention.{name}" for name in attention_parameter_names(kind, query_bias))

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

    def forward_all_steps(self, params, enc: EncoderState, tgt_in, tgt_lengths, rng=None, embed_dropout=0.0,
                          embed_rng=None):
        """tgt_in int [B, T] -> logits [B, T, V], attention [B, T, S] or None, cache. ``rng``
        enables the dropout between layers, ``embed_rng`` ``embed_dropout`` on the embedded inputs."""
        cfg = self.config
        x = params["tgt_embed"][tgt_in]  # [B, T, E]
        embed_mask = _dropout_mask(x.shape, embed_dropout, embed_rng)
        if embed_mask is not None:
            x = x * embed_mask
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
        cache = (tgt_in, embed_mask, lstm_caches, masks, combined, att_cache, o)
        return logits, a, cache

    def backward_all_steps(self, params, enc: EncoderState, d_logits, cache, grads):
        """-> (dL/dmemory or None, dL/dh0 per layer, dL/dc0 per layer)."""
        cfg = self.config
        tgt_in, embed_mask, lstm_caches, masks, combined, att_cache, o = cache
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
        if embed_mask is not None:  # the forward's x = tgt_embed[tgt_in] * embed_mask
            d_h = d_h * embed_mask
        _embed_backward(grads["tgt_embed"], tgt_in, d_h)
        return d_memory, d_h0, d_c0

    # -- one step at a time ----------------------------------------------------------------------

    def initial_step_state(self, enc: EncoderState):
        """The state before step 0: (h per layer, c per layer, previous attentional state or None)."""
        cfg = self.config
        B = enc.h0[0].shape[0]
        feed = np.zeros((B, cfg.hidden_size), enc.h0[0].dtype) if cfg.input_feeding else None
        return list(enc.h0), list(enc.c0), feed

    def step_forward(self, params, enc: EncoderState, tokens, state, rng=None, embed_dropout=0.0, embed_rng=None):
        """One decoder step: tokens int [B] -> logits [B, V], attention [B, S] or None, new state,
        cache (for :meth:`step_backward`). ``rng`` enables the dropout between layers,
        ``embed_rng`` ``embed_dropout`` on the embedded tokens."""
        cfg = self.config
        h, c, feed = state
        e = params["tgt_embed"][tokens]  # [B, E]
        embed_mask = _dropout_mask(e.shape, embed_dropout, embed_rng)
        if embed_mask is not None:
            e = e * embed_mask
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
        cache = (tokens, embed_mask, cell_caches, masks, combined, att_cache, o, bahdanau)
        return logits, a, (new_h, new_c, new_feed), cache

    def step_backward(self, params, d_logits, d_state, cache, grads):
        """Backward of one step. ``d_state`` = (dh per layer, dc per layer, d_feed) w.r.t. the step's
        output state (entries may be None); returns (dL/dmemory or None, d_state w.r.t. its input)."""
        cfg = self.config
        tokens, embed_mask, cell_caches, masks, combined, att_cache, o, bahdanau = cache
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
        d_e = d_x[:, :E] if embed_mask is None else d_x[:, :E] * embed_mask  # the forward's e * embed_mask
        _embed_backward(grads["tgt_embed"], tokens, d_e)
        return d_memory, (d_h_prev, d_c_prev, d_feed_prev)


# ---------------------------------------------------------------------------------------------
# Loss


def masked_cross_entropy(logits, targets, lengths, label_smoothing=0.0):
    """Mean (label-smoothed) cross-entropy over the valid steps of a batch and its gradient.

    logits float [B, T, V], targets int [B, T], lengths int [B] -> (loss, dL/dlogits [B, T, V],
    number of valid tokens, number of correctly predicted valid tokens).

    With ``label_smoothing = eps`` in [0, 1] each valid step's loss is PyTorch's
    (``torch.nn.functional.cross_entropy(..., label_smoothing=eps)``)::

        loss_bt = (1 - eps) * (-log p[y_bt]) + eps * mean over all V classes of (-log p[v])

    so the smoothed target distribution is ``(1 - eps) * onehot(y) + eps / V`` and, with
    ``p = softmax(logits)``, ``dloss_bt/dlogits = p - (1 - eps) * onehot(y) - eps / V``.
    ``eps = 0`` is the plain negative log-likelihood; ``correct`` counts argmax hits either way.
    """
    if not 0.0 <= label_smoothing <= 1.0:  # NaN fails too
        raise ValueError(f"label_smoothing must be a number in [0, 1], got {label_smoothing!r}")
    B, T, V = logits.shape
    valid = np.arange(T)[None, :] < lengths[:, None]  # [B, T]
    count = int(valid.sum())
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=-1, keepdims=True)
    log_total = np.log(total)
    target_logit = np.take_along_axis(shifted, targets[..., None], axis=-1)[..., 0]
    # in the forward pass this was -log p[y] = log_total - shifted[y]
    nll = log_total[..., 0] - target_logit  # [B, T]
    if label_smoothing:
        # and the mean over classes of -log p[v] = log_total - mean(shifted)
        uniform = log_total[..., 0] - shifted.mean(axis=-1, dtype=np.float64)
        per_step = (1.0 - label_smoothing) * nll + label_smoothing * uniform
    else:
        per_step = nll
    loss = float((per_step * valid).sum(dtype=np.float64) / count)
    d_logits = exp / total  # p
    target_weight = 1.0 - label_smoothing
    np.put_along_axis(d_logits, targets[..., None],
                      np.take_along_axis(d_logits, targets[..., None], -1) - target_weight, -1)
    if label_smoothing:
        d_logits -= logits.dtype.type(label_smoothing / V)
    d_logits *= (valid / count)[..., None].astype(logits.dtype)
    correct = int(((logits.argmax(axis=-1) == targets) & valid).sum())
    return loss, d_logits, count, correct
