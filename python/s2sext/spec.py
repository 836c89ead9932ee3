"""The model's spec in one table: special tokens, tokenizer names, attention kinds and styles, and
the name and shape of every parameter of a configuration (``docs/model.md``; a test holds that
page's parameter table to this one).

Shapes are written in the letters of ``docs/model.md``: ``Vs``/``Vt`` source/target vocabulary,
``E`` embedding, ``H`` hidden, ``He`` one encoder direction's hidden size (``H``, or ``H/2`` with
``bridge="concat"``), ``I_k``/``J_k`` the input size of encoder/decoder layer ``k``, ``S_max``
``max_source_length``, ``A`` the attention size of ``concat`` (``H`` in a Seq2Seq). A
configuration is a :class:`s2sext.Config` or a dict with its keys.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

__all__ = [
    "PAD", "SOS", "EOS", "UNK", "SPECIALS", "PAD_ID", "SOS_ID", "EOS_ID", "UNK_ID",
    "TOKENIZER_NAMES", "MAX_SENTENCEPIECE_BYTES", "SENTENCEPIECE_TENSOR", "SHARED_SENTENCEPIECE_TENSOR",
    "ATTENTION_PARAMETERS", "QUERY_BIAS", "ATTENTION_KINDS", "ATTENTION_STYLES",
    "BRIDGES", "COMBINE_ACTIVATIONS", "DTYPE", "aligned_array", "attention_parameter_names",
    "attention_parameter_shapes", "encoder_hidden_size", "decoder_input_size", "iter_parameter_rows",
    "iter_parameter_shapes", "parameter_table",
]

# Every vocabulary starts with these four, so their ids never depend on the data.
PAD, SOS, EOS, UNK = "<pad>", "<sos>", "<eos>", "<unk>"
SPECIALS = (PAD, SOS, EOS, UNK)
PAD_ID, SOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3

TOKENIZER_NAMES = ("char", "word", "sentencepiece")
# A sentencepiece side's model is stored in the model file as a uint8 tensor of at most this many
# bytes (docs/model-format.md): one side's as SENTENCEPIECE_TENSOR.format(side="src" or "tgt"), one
# model that both sides share once, as SHARED_SENTENCEPIECE_TENSOR.
MAX_SENTENCEPIECE_BYTES = 2**26
SENTENCEPIECE_TENSOR = "tokenizer.{side}.sentencepiece"
SHARED_SENTENCEPIECE_TENSOR = "tokenizer.sentencepiece"

# kind -> its parameters (name, shape), in the order the kernels take them (ops.attention_weight_*).
ATTENTION_PARAMETERS = {
    "dot": (),
    "scaled_dot": (),
    "general": (("w_a", "[H, H]"),),
    "concat": (("w_q", "[A, H]"), ("w_k", "[A, H]"), ("v", "[A]")),
    "location": (("w_a", "[S_max, H]"),),
}
# concat's optional query bias (attention_query_bias), after its other parameters
QUERY_BIAS = ("b_q", "[A]")
ATTENTION_KINDS = tuple(ATTENTION_PARAMETERS)
ATTENTION_STYLES = ("luong", "bahdanau")
BRIDGES = ("linear", "concat")
COMBINE_ACTIVATIONS = ("tanh", "none")

DTYPE = np.float32  # every parameter's dtype


def aligned_array(values, dtype=DTYPE, alignment=64):
    """A C-contiguous copy of ``values`` whose data starts on an ``alignment``-byte boundary (the
    kernels' row loads are then aligned)."""
    values = np.asarray(values, dtype=dtype)
    raw = np.empty(values.nbytes + alignment, np.uint8)
    offset = (-raw.ctypes.data) % alignment
    out = raw[offset:offset + values.nbytes].view(dtype).reshape(values.shape)
    out[...] = values
    return out


def unfreeze_parameters(params: dict) -> None:
    """Make every array of a parameter dict writeable again: Seq2Seq marks them read-only while it
    keeps a compiled decoder of them (Seq2Seq.search_decoder), and rebuilds that decoder when it
    finds one writeable. Every writer of parameters in place calls this first."""
    for value in params.values():
        value.flags.writeable = True


def attention_parameter_names(kind: str, query_bias: bool = False) -> tuple[str, ...]:
    """The names of attention ``kind``'s parameters (``w_a``; ``w_q``, ``w_k``, ``v`` [, ``b_q``])."""
    return tuple(name for name, _ in _attention_rows(kind, query_bias))


def attention_parameter_shapes(kind: str, query_bias: bool = False, **sizes: int) -> list[tuple[str, tuple]]:
    """(name, shape) of attention ``kind``'s parameters, for the letters in ``sizes`` (``H``, ``A``,
    ``S_max``; only those the kind uses are needed)."""
    return [(name, _evaluate(letters, sizes)) for name, letters in _attention_rows(kind, query_bias)]


def _attention_rows(kind, query_bias):
    return ATTENTION_PARAMETERS[kind] + ((QUERY_BIAS,) if query_bias else ())


def _fields(config) -> Mapping:
    return config if isinstance(config, Mapping) else config.as_dict()


def encoder_hidden_size(config) -> int:
    """``He``: each encoder direction's hidden size, ``hidden_size`` or half of it with bridge='concat'."""
    cfg = _fields(config)
    return cfg["hidden_size"] // 2 if cfg["bridge"] == "concat" else cfg["hidden_size"]


def decoder_input_size(config) -> int:
    """``J_0``: ``E``, plus ``H`` with input feeding or the Bahdanau style (only with attention)."""
    cfg = _fields(config)
    extra = cfg["attention"] is not None and (cfg["input_feeding"] or cfg["attention_style"] == "bahdanau")
    return cfg["embed_size"] + (cfg["hidden_size"] if extra else 0)


def iter_parameter_rows(config, max_layers: int | None = None):
    """The rows of docs/model.md's parameter table that ``config`` has, one per parameter in the
    model's fixed order: ``(name pattern, shape in letters, k)``, ``k`` the layer of a pattern with
    ``{k}`` (else None). ``max_layers`` stops each LSTM stack after that many layers."""
    cfg = _fields(config)
    L = cfg["num_layers"] if max_layers is None else min(cfg["num_layers"], max_layers)
    attention = cfg["attention"]
    yield "src_embed", "[Vs, E]", None
    yield "tgt_embed", "[Vt, E]", None
    for k in range(L):
        for suffix in ("", "_reverse") if cfg["bidirectional"] else ("",):
            yield f"encoder.l{{k}}{suffix}.w_ih", "[4He, I_k]", k
            yield f"encoder.l{{k}}{suffix}.w_hh", "[4He, He]", k
            yield f"encoder.l{{k}}{suffix}.b", "[4He]", k
    if cfg["bidirectional"] and cfg["bridge"] == "linear":
        for part in ("h", "c"):
            yield f"bridge.{part}.weight", "[H, 2H]", None
            yield f"bridge.{part}.bias", "[H]", None
        if attention is not None:
            yield "bridge.memory.weight", "[H, 2H]", None
    for k in range(L):
        yield "decoder.l{k}.w_ih", "[4H, J_k]", k
        yield "decoder.l{k}.w_hh", "[4H, H]", k
        yield "decoder.l{k}.b", "[4H]", k
    if attention is not None:
        query_bias = attention == "concat" and cfg["attention_query_bias"]
        for name, letters in _attention_rows(attention, query_bias):
            yield f"attention.{name}", letters.replace("A", "H"), None  # a Seq2Seq's A is H
        yield "combine.weight", "[H, 2H]", None
        yield "combine.bias", "[H]", None
    yield "out.weight", "[Vt, H]", None
    yield "out.bias", "[Vt]", None


def iter_parameter_shapes(config, max_layers: int | None = None):
    """``(name, shape)`` of every parameter of ``config``, one at a time in the model's fixed order
    (a loader stops at the first one its file lacks); ``max_layers`` as in :func:`iter_parameter_rows`."""
    cfg = _fields(config)
    He = encoder_hidden_size(cfg)
    sizes = {"Vs": cfg["src_vocab_size"], "Vt": cfg["tgt_vocab_size"], "E": cfg["embed_size"],
             "H": cfg["hidden_size"], "He": He, "S_max": cfg["max_source_length"]}
    first_inputs = {"I_k": cfg["embed_size"], "J_k": decoder_input_size(cfg)}
    later_inputs = {"I_k": (2 if cfg["bidirectional"] else 1) * He, "J_k": cfg["hidden_size"]}
    for pattern, letters, k in iter_parameter_rows(cfg, max_layers):
        if k is None:
            yield pattern, _evaluate(letters, sizes)
        else:
            yield pattern.format(k=k), _evaluate(letters, {**sizes, **(first_inputs if k == 0 else later_inputs)})


def parameter_table(config) -> list[tuple[str, tuple[int, ...]]]:
    """``[(name, shape), ...]`` of every parameter of ``config`` (a Config or a dict), in order."""
    return list(iter_parameter_shapes(config))


_DIMENSION = re.compile(r"(\d*)([A-Za-z_]+)")


def _evaluate(letters: str, sizes: Mapping[str, int]) -> tuple[int, ...]:
    """A shape in letters (``"[4He, I_k]"``) -> ints; a dimension is a letter times an optional factor."""
    shape = []
    for dimension in letters.strip("[]").split(", "):
        factor, letter = _DIMENSION.fullmatch(dimension).groups()
        shape.append(int(factor or 1) * sizes[letter])
    return tuple(shape)
