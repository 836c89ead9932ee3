"""PyTorch weights <-> s2sext models: :func:`seq2seq_from_state_dict` / :func:`seq2seq_to_state_dict`
map a PyTorch model's state dict onto :class:`s2sext.Seq2Seq` and back (see ``DEFAULT_NAMES``), and
:func:`convert_gate_order` converts LSTM weights from other gate layouts to PyTorch's (i, f, g, o).
Imports torch; :mod:`s2sext.torch` re-exports these names.
"""

from __future__ import annotations

import numpy as np
import torch

from .model import Seq2Seq, parameter_shapes

__all__ = ["convert_gate_order", "DEFAULT_NAMES", "seq2seq_from_state_dict", "seq2seq_to_state_dict"]


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
    "attention.b_q": "attention.b_q",
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
    ``max_source_length``, tokenizers, ``reverse_source``, ``bridge``, ``combine_activation``,
    ``attention_query_bias``); ``names`` overrides entries of
    ``DEFAULT_NAMES``; ``decoder_cells`` (e.g. ``"decoder.cells.{k}"``) reads a decoder made of one
    ``nn.LSTMCell`` per layer. LSTM biases are summed (``b = bias_ih + bias_hh``). A missing name or a
    wrong shape raises ``KeyError``/``ValueError`` naming both parameters. With ``strict`` (as
    ``load_state_dict``), state-dict entries the mapping does not use raise ``ValueError`` too, except
    names starting with one of ``ignore_prefixes`` (e.g. tied copies of weights).
    """
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
            value = np.asarray(value)
            if value.shape != shapes[param]:  # each of a summed pair too, before numpy would broadcast them
                raise ValueError(f"{name!r} has shape {value.shape}; s2sext parameter {param!r} needs {shapes[param]}")
            values.append(value)
        model.params[param][...] = values[0] if how == "copy" else values[0] + values[1]
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
