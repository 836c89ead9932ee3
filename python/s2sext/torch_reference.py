"""A PyTorch twin of the s2sext Seq2Seq model (``docs/model.md``).

It serves two purposes: the tests check the numpy/C++ model's loss and every parameter gradient
against it, and the benchmark times a training epoch with it. It is therefore written the way a
PyTorch user would write it for speed on a CPU:

* the encoder is one ``nn.LSTM`` (all layers, both directions) over packed sequences
  (``pack_padded_sequence(enforce_sorted=False)``);
* the decoder runs all ``T`` steps with one multi-layer ``nn.LSTM`` call and one batched attention
  call when every step is fed the ground truth and the style is Luong without input feeding (or
  there is no attention); otherwise it loops over the steps with one ``nn.LSTMCell`` per layer.
  The ``nn.LSTM`` of the all-steps path shares (ties) its parameters with those cells, so both
  paths compute with the same weights;
* attention scores and contexts are batched matrix products, the softmax is masked by the source
  lengths (scores at ``s >= src_lengths[b]`` are ``-inf``);
* the loss applies the output projection only to the valid target positions.

This module imports torch; it is never imported by ``s2sext/__init__``.

Parameter names. The s2sext names of ``docs/model.md`` (``encoder.l0.w_ih``,
``encoder.l1_reverse.b``, ``decoder.l0.w_hh``, ``attention.w_q``, ``combine.weight``,
``out.bias``, ``src_embed``, ``bridge.h.weight``, ...) map onto the PyTorch modules' parameters.
An s2sext LSTM has one bias ``b``; PyTorch has two. Every ``bias_hh`` is frozen at zero
(``requires_grad=False``, so the module has exactly s2sext's trainable parameters);
:meth:`TorchSeq2Seq.state_from_params` loads ``bias_ih = b`` and ``bias_hh = 0``;
:meth:`TorchSeq2Seq.params_as_numpy` returns ``b = bias_ih + bias_hh`` and
:meth:`TorchSeq2Seq.grads_as_numpy` returns ``d loss / d b = bias_ih.grad`` (``bias_hh`` has no
grad, so this is also ``bias_ih.grad + bias_hh.grad``).

Config keys (a dict): ``src_vocab_size``, ``tgt_vocab_size``, ``embed_size``, ``hidden_size``
(required); ``num_layers`` (1), ``bidirectional`` (False), ``dropout`` (0.0, between the LSTM layers
of the encoder and of the decoder, active only in training mode), ``attention`` (None or one of
``ATTENTION_KINDS``), ``attention_style`` ("luong" or "bahdanau"), ``input_feeding`` (False),
``max_source_length`` (``S_max``, required for ``location`` attention), ``bridge`` ("linear" or
"concat": bidirectional with ``H/2`` units per direction, the decoder starts from the concatenated
final states and attends over the concatenated outputs), ``combine_activation`` ("tanh" or
"none"), ``attention_query_bias`` (False; concat only: ``v . tanh(W_q q + b_q + W_k k)``).
Other keys are ignored.
With ``attention=None`` the style and input feeding do not apply (decoder input ``e_t``,
``o_t = h_t``).

Tokens are int64 ids, padding id 0, ``<sos>`` = 1 (see ``SOS``).
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .checks import check_int, check_real
from .spec import (ATTENTION_KINDS, ATTENTION_STYLES, BRIDGES, COMBINE_ACTIVATIONS, EOS_ID, PAD_ID, SOS_ID, UNK_ID,
                   attention_parameter_shapes, decoder_input_size, parameter_table)

__all__ = ["TorchSeq2Seq", "param_shapes", "normalize_config", "ATTENTION_KINDS", "PAD", "SOS",
           "EOS", "UNK"]

PAD, SOS, EOS, UNK = PAD_ID, SOS_ID, EOS_ID, UNK_ID

_REQUIRED = ("src_vocab_size", "tgt_vocab_size", "embed_size", "hidden_size")
_DEFAULTS = {
    "num_layers": 1,
    "bidirectional": False,
    "dropout": 0.0,
    "attention": None,
    "attention_style": "luong",
    "input_feeding": False,
    "max_source_length": None,
    "bridge": "linear",
    "combine_activation": "tanh",
    "attention_query_bias": False,
}


def normalize_config(config: dict) -> dict:
    """The config with defaults filled in and every value checked (TypeError or ValueError naming the key)."""
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    for key in _REQUIRED:
        if key not in config:
            raise ValueError(f"config is missing {key!r}")
    cfg = dict(_DEFAULTS)
    cfg.update({k: config[k] for k in config if k in _REQUIRED or k in _DEFAULTS})
    for key in _REQUIRED + ("num_layers",):
        cfg[key] = check_int(cfg[key], f"config[{key!r}]", minimum=1)
    for key in ("bidirectional", "input_feeding", "attention_query_bias"):
        if not isinstance(cfg[key], (bool, np.bool_)):
            raise ValueError(f"config[{key!r}] must be a bool, got {cfg[key]!r}")
        cfg[key] = bool(cfg[key])
    cfg["dropout"] = float(check_real(cfg["dropout"], "config['dropout']", 0, 1, open_maximum=True))
    if cfg["attention"] is not None and cfg["attention"] not in ATTENTION_KINDS:
        raise ValueError(f"config['attention'] must be None or one of {ATTENTION_KINDS}, "
                         f"got {cfg['attention']!r}")
    if cfg["attention_style"] not in ATTENTION_STYLES:
        raise ValueError(f"config['attention_style'] must be one of {ATTENTION_STYLES}, "
                         f"got {cfg['attention_style']!r}")
    if cfg["bridge"] not in BRIDGES or (
            cfg["bridge"] == "concat" and not (cfg["bidirectional"] and cfg["hidden_size"] % 2 == 0)):
        raise ValueError(f"config['bridge'] must be 'linear', or 'concat' with bidirectional and an "
                         f"even hidden_size, got {cfg['bridge']!r}")
    if cfg["combine_activation"] not in COMBINE_ACTIVATIONS:
        raise ValueError(f"config['combine_activation'] must be 'tanh' or 'none', "
                         f"got {cfg['combine_activation']!r}")
    if cfg["attention_query_bias"] and cfg["attention"] != "concat":
        raise ValueError("config['attention_query_bias'] needs attention 'concat'")
    if cfg["attention"] == "location" and cfg["max_source_length"] is None:
        raise ValueError("config['max_source_length'] is required for location attention")
    if cfg["max_source_length"] is not None:
        cfg["max_source_length"] = check_int(cfg["max_source_length"], "config['max_source_length']", minimum=1)
    return cfg


def param_shapes(config: dict) -> Dict[str, Tuple[int, ...]]:
    """Every parameter of the model with its shape, in s2sext names (the table of docs/model.md)."""
    return dict(parameter_table(normalize_config(config)))


class _Attention(nn.Module):
    """The score parameters of one attention kind (names as in s2sext: w_a; w_q, w_k, v)."""

    def __init__(self, kind: str, hidden_size: int, max_source_length: Optional[int], dtype=None,
                 query_bias: bool = False):
        super().__init__()
        self.kind = kind
        bound = 1.0 / math.sqrt(hidden_size)
        shapes = attention_parameter_shapes(kind, query_bias, H=hidden_size, A=hidden_size, S_max=max_source_length)
        for name, shape in shapes:
            setattr(self, name, nn.Parameter(torch.empty(*shape, dtype=dtype).uniform_(-bound, bound)))
        if kind == "concat" and not query_bias:
            self.b_q = None


class _Memory:
    """What a forward pass precomputes once for attention over the encoder's memory."""

    __slots__ = ("memory", "keys_t", "key_proj", "mask", "S")

    def __init__(self, memory, keys_t, key_proj, mask):
        self.memory = memory        # [B, S, H]  the values (contexts are a @ memory)
        self.keys_t = keys_t        # [B, H, S]  memory^T; general: (memory W_a^T)^T
        self.key_proj = key_proj    # [B, S, A]  concat: memory W_k^T
        self.mask = mask            # [B, 1, S]  True at padded source positions
        self.S = memory.shape[1]


def _numpy_dtype(dtype: torch.dtype):
    return torch.empty((), dtype=dtype).numpy().dtype


def _as_index_tensor(x, name: str, ndim: int) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
            raise TypeError(f"{name} must hold integers, got {x.dtype}")
        t = x.detach().to(device="cpu", dtype=torch.int64)
    else:
        a = np.asarray(x)
        if a.dtype.kind not in "iu":
            raise TypeError(f"{name} must hold integers, got {a.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))
    if t.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {tuple(t.shape)}")
    return t


def _check_tokens(t: torch.Tensor, name: str, vocab: int) -> None:
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= vocab):
        raise ValueError(f"{name} holds ids outside [0, {vocab}): "
                         f"min {int(t.min())}, max {int(t.max())}")


def _check_lengths(lengths: torch.Tensor, name: str, B: int, S: int) -> None:
    if lengths.shape != (B,):
        raise ValueError(f"{name} must have shape ({B},), got {tuple(lengths.shape)}")
    if B and (int(lengths.min()) < 1 or int(lengths.max()) > S):
        raise ValueError(f"{name} must be in 1..{S}, got min {int(lengths.min())}, "
                         f"max {int(lengths.max())}")


class TorchSeq2Seq(nn.Module):
    """The Seq2Seq model of docs/model.md in PyTorch (see the module docstring).

    Parameters are created with PyTorch's default initialization; load s2sext weights with
    :meth:`state_from_params` or build with :meth:`from_params`.
    """

    def __init__(self, config: dict, dtype: Optional[torch.dtype] = None):
        super().__init__()
        cfg = normalize_config(config)
        self.config = cfg
        E, H, L = cfg["embed_size"], cfg["hidden_size"], cfg["num_layers"]
        self.hidden_size = H
        self.num_layers = L
        self.bidirectional = cfg["bidirectional"]
        self.dropout = cfg["dropout"]
        self.attention_kind = cfg["attention"]
        self.style = cfg["attention_style"]
        self.input_feeding = cfg["input_feeding"] and self.attention_kind is not None
        self.max_source_length = cfg["max_source_length"]
        self.bridge_kind = cfg["bridge"]
        self.combine_activation = cfg["combine_activation"]
        He = H // 2 if self.bridge_kind == "concat" else H   # one encoder direction's size
        self.encoder_hidden_size = He
        layer_dropout = self.dropout if L > 1 else 0.0   # nn.LSTM warns about dropout with L=1
        fk = {"dtype": dtype}

        self.src_embed = nn.Embedding(cfg["src_vocab_size"], E, **fk)
        self.tgt_embed = nn.Embedding(cfg["tgt_vocab_size"], E, **fk)
        self.encoder = nn.LSTM(E, He, num_layers=L, bidirectional=self.bidirectional,
                               dropout=layer_dropout, batch_first=True, **fk)
        if self.bidirectional and self.bridge_kind == "linear":
            bridge = {"h": nn.Linear(2 * H, H, **fk), "c": nn.Linear(2 * H, H, **fk)}
            if self.attention_kind is not None:
                bridge["memory"] = nn.Linear(2 * H, H, bias=False, **fk)
            self.bridge = nn.ModuleDict(bridge)
        else:
            self.bridge = None
        J0 = decoder_input_size(cfg)
        self.decoder = nn.ModuleList(
            [nn.LSTMCell(J0 if k == 0 else H, H, **fk) for k in range(L)])
        # The all-steps path: one multi-layer nn.LSTM whose parameters are the cells' (tied).
        if self.attention_kind is None or (self.style == "luong" and not self.input_feeding):
            lstm = nn.LSTM(J0, H, num_layers=L, dropout=layer_dropout, batch_first=True, **fk)
            for k, cell in enumerate(self.decoder):
                setattr(lstm, f"weight_ih_l{k}", cell.weight_ih)
                setattr(lstm, f"weight_hh_l{k}", cell.weight_hh)
                setattr(lstm, f"bias_ih_l{k}", cell.bias_ih)
                setattr(lstm, f"bias_hh_l{k}", cell.bias_hh)
            self.decoder_all_steps = lstm
        else:
            self.decoder_all_steps = None
        if self.attention_kind is not None:
            self.attention = _Attention(self.attention_kind, H, self.max_source_length, dtype,
                                        cfg["attention_query_bias"])
            self.combine = nn.Linear(2 * H, H, **fk)
        else:
            self.attention = None
            self.combine = None
        self.out = nn.Linear(H, cfg["tgt_vocab_size"], **fk)
        self._names = self._build_name_map()
        # One bias per LSTM as in s2sext: fold PyTorch's bias_hh into bias_ih and freeze it at 0,
        # so the model has exactly s2sext's trainable parameters (an optimizer sees one bias).
        with torch.no_grad():
            for ts in self._names.values():
                if len(ts) == 2:
                    ts[0].add_(ts[1])
                    ts[1].zero_()
                    ts[1].requires_grad_(False)

    # ------------------------------------------------------------------ parameters by s2sext name

    def _build_name_map(self) -> Dict[str, Tuple[torch.Tensor, ...]]:
        """s2sext name -> the parameter, or (bias_ih, bias_hh) for an LSTM's `b`."""
        m: Dict[str, Tuple[torch.Tensor, ...]] = {
            "src_embed": (self.src_embed.weight,),
            "tgt_embed": (self.tgt_embed.weight,),
        }
        enc = self.encoder
        for k in range(self.num_layers):
            for sfx in ("", "_reverse")[:2 if self.bidirectional else 1]:
                m[f"encoder.l{k}{sfx}.w_ih"] = (getattr(enc, f"weight_ih_l{k}{sfx}"),)
                m[f"encoder.l{k}{sfx}.w_hh"] = (getattr(enc, f"weight_hh_l{k}{sfx}"),)
                m[f"encoder.l{k}{sfx}.b"] = (getattr(enc, f"bias_ih_l{k}{sfx}"),
                                             getattr(enc, f"bias_hh_l{k}{sfx}"))
        if self.bridge is not None:
            for key, lin in self.bridge.items():
                m[f"bridge.{key}.weight"] = (lin.weight,)
                if lin.bias is not None:
                    m[f"bridge.{key}.bias"] = (lin.bias,)
        for k, cell in enumerate(self.decoder):
            m[f"decoder.l{k}.w_ih"] = (cell.weight_ih,)
            m[f"decoder.l{k}.w_hh"] = (cell.weight_hh,)
            m[f"decoder.l{k}.b"] = (cell.bias_ih, cell.bias_hh)
        if self.attention is not None:
            for pname, p in self.attention.named_parameters():
                m[f"attention.{pname}"] = (p,)
            m["combine.weight"] = (self.combine.weight,)
            m["combine.bias"] = (self.combine.bias,)
        m["out.weight"] = (self.out.weight,)
        m["out.bias"] = (self.out.bias,)
        return m

    def param_shapes(self) -> Dict[str, Tuple[int, ...]]:
        """s2sext name -> shape of every parameter (equal to ``param_shapes(config)``)."""
        return {name: tuple(ts[0].shape) for name, ts in self._names.items()}

    def state_from_params(self, params: Dict[str, np.ndarray]) -> None:
        """Loads weights given in s2sext names (any real dtype; converted to the module's dtype).

        LSTM biases: ``bias_ih = b``, ``bias_hh = 0``. Raises ValueError naming the parameter
        when one is missing, unexpected or of the wrong shape; nothing is loaded then.
        """
        if not isinstance(params, dict):
            raise TypeError(f"params must be a dict, got {type(params).__name__}")
        arrays = {}
        for name in self._names:
            if name not in params:
                raise ValueError(f"missing parameter {name!r}")
        for name in params:
            if name not in self._names:
                raise ValueError(f"unexpected parameter {name!r}")
        for name, targets in self._names.items():
            value = params[name]
            if isinstance(value, torch.Tensor):
                value = value.detach().cpu().numpy()
            a = np.asarray(value)
            if a.dtype.kind not in "fiu":
                raise ValueError(f"parameter {name!r}: expected a real array, got dtype {a.dtype}")
            expected = tuple(targets[0].shape)
            if a.shape != expected:
                raise ValueError(f"parameter {name!r}: expected shape {expected}, got {a.shape}")
            arrays[name] = a
        with torch.no_grad():
            for name, targets in self._names.items():
                targets[0].copy_(torch.from_numpy(np.array(arrays[name], dtype=np.float64)))
                for extra in targets[1:]:
                    extra.zero_()

    load_params = state_from_params

    @classmethod
    def from_params(cls, config: dict, params: Dict[str, np.ndarray],
                    dtype: torch.dtype = torch.float64) -> "TorchSeq2Seq":
        """A model of `config` in `dtype` holding the s2sext weights `params`."""
        model = cls(config, dtype=dtype)
        model.state_from_params(params)
        return model

    def params_as_numpy(self) -> Dict[str, np.ndarray]:
        """Every parameter in s2sext names (fresh arrays in the module's dtype);
        ``b = bias_ih + bias_hh``."""
        with torch.no_grad():
            return {name: sum(ts[1:], ts[0].detach().clone()).numpy()
                    for name, ts in self._names.items()}

    def grads_as_numpy(self) -> Dict[str, np.ndarray]:
        """Every parameter's ``.grad`` in s2sext names (fresh arrays; zeros where none reached it).

        For an LSTM's ``b`` this is ``bias_ih.grad``, which is ``d loss / d b``: ``b`` enters the
        gates only through ``bias_ih + bias_hh`` and ``bias_hh`` is frozen (no grad), so it is
        also ``bias_ih.grad + bias_hh.grad``. (Were ``bias_hh`` made trainable, its grad would
        equal ``bias_ih.grad`` and adding the two would double ``d loss / d b``; it is not added.)
        """
        out = {}
        for name, ts in self._names.items():
            g = ts[0].grad
            if g is None:
                out[name] = np.zeros(tuple(ts[0].shape), dtype=_numpy_dtype(ts[0].dtype))
            else:
                out[name] = g.detach().clone().numpy()
        return out

    # ------------------------------------------------------------------ encoder and attention

    def _prepare_inputs(self, src, src_lengths):
        src_t = _as_index_tensor(src, "src", 2)
        B, S = src_t.shape
        lengths = _as_index_tensor(src_lengths, "src_lengths", 1)
        _check_lengths(lengths, "src_lengths", B, S)
        _check_tokens(src_t, "src", self.src_embed.num_embeddings)
        if self.attention_kind == "location" and S > self.max_source_length:
            raise ValueError(f"src has {S} positions, more than location attention's "
                             f"max_source_length {self.max_source_length}")
        return src_t, lengths

    def _encode(self, src_t: torch.Tensor, lengths: torch.Tensor):
        """-> memory [B, S, H] (None without attention), decoder h0, c0 [L, B, H]."""
        B, S = src_t.shape
        L, H = self.num_layers, self.encoder_hidden_size
        x = self.src_embed(src_t)
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, (h_n, c_n) = self.encoder(packed)
        hs, _ = pad_packed_sequence(out, batch_first=True, total_length=S)   # zero past a length
        if self.bidirectional:
            # h_n: [L*2, B, H] ordered (layer 0 fwd, layer 0 bwd, layer 1 fwd, ...)
            hcat = h_n.view(L, 2, B, H).transpose(1, 2).reshape(L, B, 2 * H)
            ccat = c_n.view(L, 2, B, H).transpose(1, 2).reshape(L, B, 2 * H)
            if self.bridge is None:   # bridge "concat": the state and memory as they are
                h0, c0 = hcat, ccat
                memory = hs if self.attention is not None else None
            else:
                h0 = self.bridge["h"](hcat)
                c0 = self.bridge["c"](ccat)
                memory = self.bridge["memory"](hs) if self.attention is not None else None
        else:
            h0, c0 = h_n, c_n
            memory = hs if self.attention is not None else None
        return memory, h0, c0

    def _prepare_memory(self, memory: torch.Tensor, lengths: torch.Tensor) -> _Memory:
        S = memory.shape[1]
        mask = (torch.arange(S)[None, :] >= lengths[:, None]).unsqueeze(1)       # [B, 1, S]
        kind = self.attention_kind
        keys_t = key_proj = None
        if kind in ("dot", "scaled_dot"):
            keys_t = memory.transpose(1, 2)
        elif kind == "general":
            # q . (W_a k) = q . (k W_a^T): project the S keys once rather than the T queries.
            keys_t = (memory @ self.attention.w_a.t()).transpose(1, 2)
        elif kind == "concat":
            key_proj = memory @ self.attention.w_k.t()
        return _Memory(memory, keys_t, key_proj, mask)

    def _attend(self, mem: _Memory, q: torch.Tensor):
        """Queries q [B, T, H] -> weights a [B, T, S] and contexts [B, T, H]."""
        kind = self.attention_kind
        if kind in ("dot", "general"):
            scores = torch.bmm(q, mem.keys_t)
        elif kind == "scaled_dot":
            scores = torch.bmm(q, mem.keys_t) * (1.0 / math.sqrt(q.shape[-1]))
        elif kind == "concat":
            qp = q @ self.attention.w_q.t()                                        # [B, T, A]
            if self.attention.b_q is not None:
                qp = qp + self.attention.b_q
            e = torch.tanh(qp.unsqueeze(2) + mem.key_proj.unsqueeze(1))           # [B, T, S, A]
            scores = e @ self.attention.v                                          # [B, T, S]
        else:  # location
            scores = q @ self.attention.w_a[:mem.S].t()
        scores = scores.masked_fill(mem.mask, -math.inf)
        a = torch.softmax(scores, dim=-1)
        return a, torch.bmm(a, mem.memory)

    def _combine(self, context: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        combined = self.combine(torch.cat([context, h], dim=-1))
        return torch.tanh(combined) if self.combine_activation == "tanh" else combined

    # ------------------------------------------------------------------ decoder

    def _decode_all_steps(self, emb, h0, c0, mem: Optional[_Memory]):
        """Teacher-forced Luong without input feeding (or no attention): all T steps at once."""
        hs, _ = self.decoder_all_steps(emb, (h0, c0))                              # [B, T, H]
        if self.attention is None:
            return hs, None
        a, context = self._attend(mem, hs)
        return self._combine(context, hs), a

    def _init_step_state(self, h0, c0):
        h = list(h0.unbind(0))
        c = list(c0.unbind(0))
        feed = h0.new_zeros(h0.shape[1:]) if self.input_feeding else None
        return h, c, feed

    def _step(self, e_t, h: List[torch.Tensor], c: List[torch.Tensor], feed,
              mem: Optional[_Memory]):
        """One decoder step; updates the lists h, c in place (new tensors, no in-place ops).

        Returns o_t [B, H], a_t [B, S] (or None) and the next input-feeding vector."""
        a = None
        if self.attention is not None and self.style == "bahdanau":
            a, context = self._attend(mem, h[-1].unsqueeze(1))
            a, context = a.squeeze(1), context.squeeze(1)
            x = torch.cat([e_t, context], dim=-1)
        elif self.input_feeding:
            x = torch.cat([e_t, feed], dim=-1)
        else:
            x = e_t
        for k, cell in enumerate(self.decoder):
            if k > 0 and self.dropout > 0.0:
                x = F.dropout(x, self.dropout, self.training)
            h[k], c[k] = cell(x, (h[k], c[k]))
            x = h[k]
        if self.attention is None:
            return x, None, None
        if self.style == "luong":
            a, context = self._attend(mem, x.unsqueeze(1))
            a, context = a.squeeze(1), context.squeeze(1)
        o = self._combine(context, x)
        return o, a, (o if self.input_feeding else None)

    def _decode_steps(self, emb, h0, c0, mem: Optional[_Memory]):
        h, c, feed = self._init_step_state(h0, c0)
        outs, attns = [], []
        for t in range(emb.shape[1]):
            o, a, feed = self._step(emb[:, t], h, c, feed, mem)
            outs.append(o)
            attns.append(a)
        o = torch.stack(outs, dim=1)
        a = torch.stack(attns, dim=1) if self.attention is not None else None
        return o, a

    def uses_all_steps_path(self, teacher_forcing_tokens=None, step_path: bool = False) -> bool:
        """Whether a loss/forward_logits call with these arguments runs the decoder all at once."""
        return (self.decoder_all_steps is not None and teacher_forcing_tokens is None
                and not step_path)

    def _decoder_outputs(self, src, src_lengths, tgt_in, teacher_forcing_tokens, step_path):
        """-> o [B, T, H] (the vectors the output layer projects), a [B, T, S] or None."""
        src_t, lengths = self._prepare_inputs(src, src_lengths)
        tgt_t = _as_index_tensor(tgt_in, "tgt_in", 2)
        B = src_t.shape[0]
        if tgt_t.shape[0] != B or tgt_t.shape[1] < 1:
            raise ValueError(f"tgt_in must have shape ({B}, T>=1), got {tuple(tgt_t.shape)}")
        if teacher_forcing_tokens is not None:
            tf = _as_index_tensor(teacher_forcing_tokens, "teacher_forcing_tokens", 2)
            if tf.shape != tgt_t.shape:
                raise ValueError(f"teacher_forcing_tokens must have the shape of tgt_in "
                                 f"{tuple(tgt_t.shape)}, got {tuple(tf.shape)}")
            dec_in = tf
        else:
            dec_in = tgt_t
        _check_tokens(dec_in, "decoder inputs", self.tgt_embed.num_embeddings)
        memory, h0, c0 = self._encode(src_t, lengths)
        mem = self._prepare_memory(memory, lengths) if memory is not None else None
        emb = self.tgt_embed(dec_in)
        if self.uses_all_steps_path(teacher_forcing_tokens, step_path):
            return self._decode_all_steps(emb, h0, c0, mem)
        return self._decode_steps(emb, h0, c0, mem)

    # ------------------------------------------------------------------ public entry points

    def forward_logits(self, src, src_lengths, tgt_in, *, teacher_forcing_tokens=None,
                       step_path: bool = False):
        """Logits [B, T, Vt] for every decoder step (padded steps included) and the attention
        weights [B, T, S] (None without attention). `teacher_forcing_tokens` [B, T], if given,
        replaces `tgt_in` as the decoder inputs (then the step path runs); `step_path=True` forces
        the per-step loop even where the all-steps path applies."""
        o, a = self._decoder_outputs(src, src_lengths, tgt_in, teacher_forcing_tokens, step_path)
        return self.out(o), a

    def loss(self, src, src_lengths, tgt_in, tgt_out, tgt_lengths, teacher_forcing_tokens=None,
             *, step_path: bool = False) -> torch.Tensor:
        """Mean cross-entropy over the valid target positions (``t < tgt_lengths[b]``) of the batch:
        the sum of the per-token cross-entropies divided by their number. A scalar tensor
        (call ``.backward()`` on it, then :meth:`grads_as_numpy`)."""
        tgt_out_t = _as_index_tensor(tgt_out, "tgt_out", 2)
        tgt_in_shape = tuple(np.shape(tgt_in)) if not isinstance(tgt_in, torch.Tensor) \
            else tuple(tgt_in.shape)
        if tuple(tgt_out_t.shape) != tgt_in_shape:
            raise ValueError(f"tgt_out must have the shape of tgt_in {tgt_in_shape}, "
                             f"got {tuple(tgt_out_t.shape)}")
        B, T = tgt_out_t.shape
        tgt_len = _as_index_tensor(tgt_lengths, "tgt_lengths", 1)
        _check_lengths(tgt_len, "tgt_lengths", B, T)
        valid = torch.arange(T)[None, :] < tgt_len[:, None]                       # [B, T]
        targets = tgt_out_t[valid]
        _check_tokens(targets, "tgt_out", self.out.out_features)
        o, _ = self._decoder_outputs(src, src_lengths, tgt_in, teacher_forcing_tokens, step_path)
        logits = self.out(o[valid])                                               # [N, Vt]
        return F.cross_entropy(logits, targets)

    def forward(self, src, src_lengths, tgt_in, tgt_out, tgt_lengths, teacher_forcing_tokens=None,
                *, step_path: bool = False) -> torch.Tensor:
        """Same as :meth:`loss`."""
        return self.loss(src, src_lengths, tgt_in, tgt_out, tgt_lengths, teacher_forcing_tokens,
                         step_path=step_path)

    @torch.no_grad()
    def greedy(self, src, src_lengths, max_length: int) -> np.ndarray:
        """Greedy decoding: starts from ``<sos>`` and feeds each step's argmax back, for exactly
        `max_length` steps (no early stop at ``<eos>``). Runs in eval mode (no dropout) and
        restores the module's mode. Returns int64 [B, max_length]."""
        max_length = check_int(max_length, "max_length", minimum=0)
        was_training = self.training
        self.eval()
        try:
            src_t, lengths = self._prepare_inputs(src, src_lengths)
            B = src_t.shape[0]
            memory, h0, c0 = self._encode(src_t, lengths)
            mem = self._prepare_memory(memory, lengths) if memory is not None else None
            h, c, feed = self._init_step_state(h0, c0)
            y = torch.full((B,), SOS, dtype=torch.int64)
            result = torch.empty((B, int(max_length)), dtype=torch.int64)
            for t in range(int(max_length)):
                o, _, feed = self._step(self.tgt_embed(y), h, c, feed, mem)
                y = self.out(o).argmax(dim=-1)
                result[:, t] = y
            return result.numpy()
        finally:
            self.train(was_training)


# How TorchSeq2Seq's state dict names map onto s2sext's parameters, for
# s2sext.torch.seq2seq_from_state_dict(state, ..., names=STATE_DICT_NAMES, decoder_cells=DECODER_CELLS):
# a plain PyTorch model (nn.Embedding, an nn.LSTM encoder, one nn.LSTMCell per decoder layer,
# nn.Linear layers) laid out like this one imports with these two values.
STATE_DICT_NAMES = {
    "src_embed": "src_embed.weight", "tgt_embed": "tgt_embed.weight", "encoder": "encoder",
    "bridge.h.weight": "bridge.h.weight", "bridge.h.bias": "bridge.h.bias",
    "bridge.c.weight": "bridge.c.weight", "bridge.c.bias": "bridge.c.bias",
    "bridge.memory.weight": "bridge.memory.weight",
    "attention.w_a": "attention.w_a", "attention.w_q": "attention.w_q", "attention.w_k": "attention.w_k",
    "attention.v": "attention.v", "attention.b_q": "attention.b_q",
    "combine.weight": "combine.weight", "combine.bias": "combine.bias",
    "out.weight": "out.weight", "out.bias": "out.bias",
}
DECODER_CELLS = "decoder.{k}"
# The all-steps decoder's nn.LSTM shares the cells' weights: its entries are copies, not more weights.
IGNORE_PREFIXES = ("decoder_all_steps.",)
