"""Import OpenNMT-py RNN checkpoints into :class:`s2sext.Seq2Seq` (``docs/opennmt.md``).

Importing this module imports torch (a checkpoint is a ``torch.save`` file); ``import s2sext``
never does.

* :func:`load_checkpoint` reads a ``.pt`` file with ``torch.load(weights_only=True)``: no code from
  the file runs. 3.x checkpoints need only ``argparse.Namespace``; the torchtext fields pickled by
  2.x/1.x are rebuilt as inert placeholders holding their attributes, and any other global in
  the pickle is refused.
* :func:`from_opennmt` maps the weights onto a Seq2Seq for every configuration s2sext expresses
  exactly (an ``rnn`` or ``brnn`` LSTM encoder, ``dot``/``general``/``mlp``/``none`` global
  attention, ``input_feed`` 0 or 1, any number of layers) and refuses everything else with a
  ValueError naming the option. ``brnn`` becomes ``bidirectional=True, bridge="concat"`` (each
  direction hidden_size/2, concatenated, no learned bridge); ``mlp`` becomes ``attention="concat",
  attention_query_bias=True, combine_activation="none"``.
  The architecture is read from the tensor shapes and cross-checked against the saved options.
* :func:`convert_file` does both and saves an s2sext model file.

Letters: ``V`` vocabulary size (``Vs`` source, ``Vt`` target), ``E`` embedding size, ``H`` hidden
size, ``L`` layers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import warnings
import zipfile

try:
    import torch
except ImportError as exc:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "s2sext.opennmt needs PyTorch to read OpenNMT-py checkpoints: pip install torch (>= 2.5; the CPU "
        "build is enough)"
    ) from exc

import numpy as np

from .checks import is_int
from .spec import SPECIALS
from .strict_json import object_without_repeated_keys
from .torch_state_dict import seq2seq_from_state_dict

__all__ = ["load_checkpoint", "read_safetensors", "from_opennmt", "convert_file", "safe_load_supported"]

# OpenNMT-py's special tokens (onmt/constants.py, DefaultTokens), each with the s2sext special it
# becomes, in s2sext id order (<pad> <sos> <eos> <unk>).
ONMT_SPECIALS = ("<blank>", "<s>", "</s>", "<unk>")

SRC_EMB = "encoder.embeddings.make_embedding.emb_luts.0.weight"
TGT_EMB = "decoder.embeddings.make_embedding.emb_luts.0.weight"

# s2sext part -> the OpenNMT name it is read from (s2sext.torch.seq2seq_from_state_dict's names);
# attention.w_a and combine.bias are the prepared arrays (transposed, zeros) stored under those names.
# attention.v is the prepared array (v.weight's one row) stored under its name.
_NAMES = {"src_embed": SRC_EMB, "tgt_embed": TGT_EMB, "encoder": "encoder.rnn", "decoder": "decoder.rnn",
          "attention.w_a": "decoder.attn.linear_in.weight", "attention.w_q": "decoder.attn.linear_query.weight",
          "attention.b_q": "decoder.attn.linear_query.bias", "attention.w_k": "decoder.attn.linear_context.weight",
          "attention.v": "decoder.attn.v.weight", "combine.weight": "decoder.attn.linear_out.weight",
          "combine.bias": "decoder.attn.linear_out.bias", "out.weight": "generator.weight",
          "out.bias": "generator.bias"}

# State-dict keys that only the refused options create: pattern -> what to say.
_REFUSED_KEYS = (
    (r"\.lora_", "LoRA weights (lora_layers / lora_embedding) are not supported; merge "
                                  "them into the model with OpenNMT-py's tools/lora_weights.py first"),
    (r"^decoder\.copy_attn\.|^generator\.linear(_copy)?\.", "copy attention (copy_attn) is not supported"),
    (r"^decoder\.attn\.linear_cover\.", "coverage attention (coverage_attn) is not supported"),
    (r"^decoder\.context_gate\.", "a context gate (context_gate) is not supported"),
    (r"^encoder\.bridge\.", "a learned bridge (bridge) is not supported"),
    (r"make_embedding\.emb_luts\.[1-9]|make_embedding\.mlp\.",
     "source features (n_src_feats, feat_merge) are not supported"),
    (r"make_embedding\.pe\.", "position encoding (position_encoding) is not supported"),
)


# ---------------------------------------------------------------------------------------------
# Reading files


class _Inert:
    """Stands in for an OpenNMT-py/torchtext object of a 2.x/1.x checkpoint (a field, a vocabulary,
    a tokenizer partial): keeps the pickled state as attributes and runs nothing."""

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.state = state


def _plain_dict(*args):
    """Stands in for ``collections.defaultdict`` (torchtext's ``stoi``): its items arrive later."""
    return {}


def _placeholder(name: str):
    """What the global ``name`` of a checkpoint's pickle is loaded as, or None to refuse it."""
    if name == "argparse.Namespace":
        return argparse.Namespace
    if name == "collections.defaultdict":
        return _plain_dict
    if name == "functools.partial" or name.startswith(("onmt.", "torchtext.")):
        return _Inert
    return None


def safe_load_supported() -> bool:
    """Whether this torch can load a checkpoint with placeholders for its globals: the
    ``(object, "module.name")`` form of ``torch.serialization.safe_globals`` and
    ``get_unsafe_globals_in_checkpoint`` (torch 2.6 and later)."""
    major, minor = (int(part) for part in re.match(r"(\d+)\.(\d+)", torch.__version__).groups())
    return (major, minor) >= (2, 6) and hasattr(torch.serialization, "get_unsafe_globals_in_checkpoint")


def _path(value, name: str) -> str:
    """``os.fspath(value)``, with a TypeError that names the argument."""
    if not isinstance(value, (str, bytes, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {type(value).__name__}")
    return os.fsdecode(os.fspath(value))


def load_checkpoint(path) -> dict:
    """The dict an OpenNMT-py ``.pt`` checkpoint holds, read without running code from the file.

    Uses ``torch.load(weights_only=True)`` (the file's pickle may only build tensors and plain
    containers). Allowed besides: ``argparse.Namespace`` (the options) and, for the torchtext
    fields of 2.x/1.x checkpoints, globals of the ``onmt``/``torchtext`` packages,
    ``functools.partial`` and ``collections.defaultdict``, which are loaded as inert placeholders.

    Raises
    ------
    ValueError
        The file is not a PyTorch checkpoint, or its pickle refers to any other global (it is not
        loaded, and nothing in it runs).
    """
    path = _path(path, "path")
    if not safe_load_supported():
        raise ImportError(f"reading OpenNMT-py checkpoints needs torch >= 2.6; this is torch {torch.__version__}")
    with open(path, "rb"):  # FileNotFoundError / IsADirectoryError as open() raises them
        pass
    allowed = [argparse.Namespace]
    if zipfile.is_zipfile(path):
        try:
            names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception as exc:
            raise ValueError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from None
        for name in names:
            placeholder = _placeholder(name)
            if placeholder is None:
                raise ValueError(
                    f"{path}: the checkpoint's pickle refers to {name!r}, which no OpenNMT-py checkpoint "
                    "holds; refusing to load it (nothing from the file was run)"
                )
            allowed.append((placeholder, name))
    try:
        with torch.serialization.safe_globals(allowed):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ValueError(
            f"{path}: not an OpenNMT-py checkpoint that can be read safely ({type(exc).__name__}: {first})"
        ) from None
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path}: an OpenNMT-py checkpoint is a dict; this file holds a {type(checkpoint).__name__}")
    return checkpoint


# safetensors (https://github.com/huggingface/safetensors, "Format"): an unsigned little-endian
# 64-bit header size N, N bytes of JSON {name: {"dtype", "shape", "data_offsets": [begin, end]},
# "__metadata__": {str: str}}, then the tensors' bytes, offsets relative to the end of the header,
# covering that buffer without holes or overlaps.
_ST_DTYPES = {"F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2")}
_ST_MAX_HEADER = 100 * 1024 * 1024  # the limit of the safetensors library itself


def _int_list(value) -> bool:
    return isinstance(value, list) and all(is_int(x) for x in value)


def read_safetensors(path) -> dict[str, np.ndarray]:
    """The float tensors of a ``.safetensors`` file as float32 numpy arrays (numpy only).

    Every check runs before the data is used, bounded by the file's size: the header size, the
    JSON header (no repeated keys), each entry's dtype (F64, F32, F16, BF16), shape and offsets,
    and that the entries cover the data exactly. Raises ValueError naming the path and the entry.
    """
    path = _path(path, "path")
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            raise ValueError(f"{path}: {size} bytes, too short for a safetensors file (8-byte header size first)")
        n = int.from_bytes(f.read(8), "little")
        if n > size - 8 or n > _ST_MAX_HEADER:
            raise ValueError(
                f"{path}: the safetensors header size is {n} bytes; the file has {size - 8} after the size field "
                f"and headers are at most {_ST_MAX_HEADER}"
            )
        raw_header = f.read(n)
        data = f.read()
    try:
        header = json.loads(raw_header.decode("utf-8"), object_pairs_hook=object_without_repeated_keys)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{path}: the safetensors header is not valid JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: the safetensors header must be a JSON object, got {type(header).__name__}")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError(f"{path}: the safetensors __metadata__ must map str to str")
    spans = []
    for name, entry in header.items():
        where = f"{path}: safetensors entry {name!r}"
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise ValueError(f"{where} must be an object with exactly dtype, shape and data_offsets; got {entry!r}")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in _ST_DTYPES:
            raise ValueError(f"{where} has dtype {dtype!r}; expected a float dtype, one of {sorted(_ST_DTYPES)}")
        if not _int_list(shape) or any(d < 0 for d in shape):
            raise ValueError(f"{where} has shape {shape!r}; expected a list of integers >= 0")
        if not _int_list(offsets) or len(offsets) != 2 or not 0 <= offsets[0] <= offsets[1] <= len(data):
            raise ValueError(f"{where} has data_offsets {offsets!r}; expected [begin, end] within the "
                             f"{len(data)} data bytes")
        count = 1
        for d in shape:
            count *= d
        if offsets[1] - offsets[0] != count * _ST_DTYPES[dtype].itemsize:
            raise ValueError(f"{where}: shape {shape} of {dtype} needs {count * _ST_DTYPES[dtype].itemsize} bytes; "
                             f"data_offsets {offsets} hold {offsets[1] - offsets[0]}")
        spans.append((offsets[0], offsets[1], name))
    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            raise ValueError(f"{path}: safetensors entry {name!r} starts at byte {begin}, expected {position} "
                             "(entries must cover the data without holes or overlaps)")
        position = end
    if position != len(data):
        raise ValueError(f"{path}: the safetensors entries cover {position} of the {len(data)} data bytes")
    tensors = {}
    for begin, end, name in spans:
        entry = header[name]
        values = np.frombuffer(data, _ST_DTYPES[entry["dtype"]], (end - begin) // _ST_DTYPES[entry["dtype"]].itemsize,
                               begin)
        if entry["dtype"] == "BF16":  # the top half of a float32
            values = (values.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = values.astype(np.float32).reshape(entry["shape"])
    return tensors


# ---------------------------------------------------------------------------------------------
# Options and vocabularies


def _options(checkpoint) -> dict:
    opt = checkpoint.get("opt", {})
    if isinstance(opt, argparse.Namespace):
        return vars(opt)
    if isinstance(opt, dict):
        return opt
    raise ValueError(f"checkpoint['opt'] must be an argparse.Namespace of options, got {type(opt).__name__}")


def _check_options(opt: dict) -> None:
    """ValueError naming the first option s2sext cannot express."""

    def refuse(name, why):
        raise ValueError(f"OpenNMT-py option {name} = {opt[name]!r}: {why}")

    def is_set(name):
        value = opt.get(name)
        return value not in (None, False, 0, "", [], (), "none")

    for name, wanted in (("model_type", "text"), ("model_task", "seq2seq"), ("decoder_type", "rnn"),
                         ("rnn_type", "LSTM")):
        if name in opt and opt[name] != wanted:
            what = {"model_task": "s2sext imports seq2seq models, not language models (lm)",
                    "rnn_type": "s2sext's recurrent layers are LSTMs"}.get(name, f"s2sext imports {wanted!r} only")
            refuse(name, what)
    if "encoder_type" in opt and opt["encoder_type"] not in ("rnn", "brnn"):
        refuse("encoder_type", "s2sext imports RNN encoders ('rnn', 'brnn') only")
    attention = opt.get("global_attention", "general")
    if attention not in (None, "dot", "general", "mlp", "none"):
        refuse("global_attention", "expected 'dot', 'general', 'mlp' or 'none'")
    for name in ("global_attention_function", "generator_function"):
        if name in opt and opt[name] != "softmax":
            refuse(name, "s2sext normalises with softmax only")
    for name, what in (("copy_attn", "copy attention"), ("coverage_attn", "coverage attention"),
                       ("context_gate", "a context gate"), ("bridge", "a learned bridge"),
                       ("position_encoding", "position encoding"), ("n_src_feats", "source features"),
                       ("lora_layers", "LoRA layers"), ("lora_embedding", "LoRA embeddings")):
        if is_set(name):
            refuse(name, f"{what} is not supported")


def _cross_check(opt: dict, arch: dict) -> None:
    """The saved options must agree with the architecture read from the tensors."""
    expected = {
        "L": ("layers", "enc_layers", "dec_layers"),
        "H": ("hidden_size", "enc_hid_size", "dec_hid_size", "rnn_size", "enc_rnn_size", "dec_rnn_size"),
        "E": ("word_vec_size", "src_word_vec_size", "tgt_word_vec_size"),
    }
    for letter, names in expected.items():
        for name in names:
            value = opt.get(name)
            if is_int(value) and value > 0 and value != arch[letter]:
                raise ValueError(f"OpenNMT-py option {name} = {value}, but the weights have {letter} = {arch[letter]}")
    if "input_feed" in opt and (type(opt["input_feed"]) is not int or opt["input_feed"] not in (0, 1)):
        raise ValueError(f"OpenNMT-py option input_feed must be the integer 0 or 1; got {opt['input_feed']!r}")
    if "input_feed" in opt and bool(opt["input_feed"]) != arch["input_feed"]:
        raise ValueError(f"OpenNMT-py option input_feed = {opt['input_feed']!r}, but the decoder weights are "
                         + ("nn.LSTMCell layers (input_feed 1)" if arch["input_feed"] else "an nn.LSTM (input_feed 0)"))
    brnn = opt.get("encoder_type") == "brnn" or opt.get("brnn") is True
    if ("encoder_type" in opt or "brnn" in opt) and brnn != arch["brnn"]:
        raise ValueError(f"OpenNMT-py option encoder_type = {opt.get('encoder_type')!r}, but the encoder weights are "
                         + ("bidirectional (brnn)" if arch["brnn"] else "unidirectional (rnn)"))
    attention = opt.get("global_attention", arch["attention"]) or "none"
    if attention != arch["attention"]:
        raise ValueError(f"OpenNMT-py option global_attention = {attention!r}, but the weights hold "
                         f"{arch['attention']!r} attention")


def _itos(side: str, entry) -> tuple[list, dict]:
    """Tokens of one side of the vocabulary (3.x list, 2.x TextMultiField, 1.x Field) and the names
    of its specials {s2sext special: OpenNMT token}."""
    names = dict(zip(SPECIALS, ONMT_SPECIALS))
    if isinstance(entry, (list, tuple)):
        return list(entry), names
    field = entry
    fields = getattr(entry, "fields", None)
    if fields is not None:  # a TextMultiField: [(name, Field), (feature name, Field), ...]
        if (not isinstance(fields, (list, tuple)) or not fields or not isinstance(fields[0], (list, tuple))
                or len(fields[0]) != 2):
            raise ValueError(f"vocabulary {side!r}: unexpected field layout {fields!r}")
        if len(fields) > 1:
            raise ValueError(f"vocabulary {side!r} has {len(fields) - 1} feature field(s): source features "
                             "(n_src_feats, feat_merge) are not supported")
        field = fields[0][1]
    vocab = getattr(field, "vocab", None)
    itos = getattr(vocab, "itos", None)
    if not isinstance(itos, (list, tuple)):
        raise ValueError(f"vocabulary {side!r} is a {type(entry).__name__} without a token list (.vocab.itos)")
    for special, attribute in zip(SPECIALS, ("pad_token", "init_token", "eos_token", "unk_token")):
        token = getattr(field, attribute, names[special])
        names[special] = token if isinstance(token, str) else None
    return list(itos), names


def _vocab(side: str, entry, size: int, required: tuple):
    """(s2sext tokens, perm) with perm[i] = the OpenNMT id of s2sext id i, or -1 where OpenNMT
    has no such special (its row is zero)."""
    itos, names = _itos(side, entry)
    if len(itos) != size:
        raise ValueError(f"vocabulary {side!r} has {len(itos)} tokens, but its embedding has {size} rows")
    ids = {}
    for position, token in enumerate(itos):
        if not isinstance(token, str) or token == "":
            raise ValueError(f"vocabulary {side!r}: token {position} is {token!r}; tokens must be non-empty str")
        if token in ids:
            raise ValueError(f"vocabulary {side!r}: token {position} {token!r} repeats token {ids[token]}")
        ids[token] = position
    perm = []
    for special in SPECIALS:
        onmt_token = names[special]
        if onmt_token in ids:
            perm.append(ids[onmt_token])
        elif special in required:
            raise ValueError(f"vocabulary {side!r} has no {onmt_token or ONMT_SPECIALS[SPECIALS.index(special)]!r} "
                             f"(needed as s2sext's {special})")
        else:
            perm.append(-1)
    special_ids = set(perm)
    tokens = list(SPECIALS)
    for position, token in enumerate(itos):
        if position in special_ids:
            continue
        if token in SPECIALS:
            raise ValueError(f"vocabulary {side!r}: token {position} {token!r} is an ordinary OpenNMT-py token but an "
                             "s2sext special; the vocabularies cannot be mapped")
        tokens.append(token)
        perm.append(position)
    return tokens, np.asarray(perm)


def _vocab_entries(checkpoint) -> tuple[str, object, object]:
    """(layout "3.x"/"2.x"/"1.x", source entry, target entry) of the checkpoint's vocabulary."""
    vocab = checkpoint.get("vocab")
    layout = "3.x"
    if isinstance(vocab, (list, tuple)):  # 1.x: [(side, field), ...]
        layout = "1.x"
        try:
            vocab = dict(vocab)
        except (TypeError, ValueError):
            raise ValueError("checkpoint['vocab'] is a list but not of (side, field) pairs") from None
    if not isinstance(vocab, dict) or "src" not in vocab or "tgt" not in vocab:
        raise ValueError("checkpoint['vocab'] must hold 'src' and 'tgt' vocabularies")
    if layout == "3.x" and not isinstance(vocab["tgt"], (list, tuple)):
        layout = "2.x"
    data_task = vocab.get("data_task", "seq2seq")
    if data_task != "seq2seq":
        raise ValueError(f"vocabulary data_task = {data_task!r}: s2sext imports seq2seq models, not language models")
    if vocab.get("decoder_start_token", "<s>") != "<s>":
        raise ValueError(f"vocabulary decoder_start_token = {vocab['decoder_start_token']!r}: s2sext's decoder "
                         "starts from <s> (its <sos>)")
    if vocab.get("src_feats"):
        raise ValueError("vocabulary src_feats: source features (n_src_feats, feat_merge) are not supported")
    return layout, vocab["src"], vocab["tgt"]


def _rows(table: np.ndarray, perm: np.ndarray) -> np.ndarray:
    out = table[np.maximum(perm, 0)]
    out[perm < 0] = 0.0
    return out


# ---------------------------------------------------------------------------------------------
# Weights


def _float32(name: str, value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        if not value.dtype.is_floating_point:
            raise ValueError(f"checkpoint tensor {name!r} has dtype {value.dtype}; expected a float tensor")
        try:
            return value.detach().to("cpu", torch.float32).numpy()
        except (RuntimeError, NotImplementedError) as exc:  # e.g. a meta tensor holds no data
            raise ValueError(f"checkpoint tensor {name!r} cannot be read as float32 ({exc})") from None
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return value.astype(np.float32)
    raise ValueError(f"checkpoint entry {name!r} is a {type(value).__name__}; expected a float tensor")


def _state_dict(checkpoint, weights) -> dict:
    """One flat name -> float32 array dict: the model's entries and ``generator.*``."""
    if weights is not None:
        if checkpoint.get("model") is not None:
            raise ValueError("the checkpoint holds its weights ('model'); weights= is only for checkpoints saved "
                             "with -save_format safetensors")
        raw = dict(read_safetensors(_path(weights, "weights")))
    else:
        if checkpoint.get("model") is None:
            raise ValueError("the checkpoint holds no weights ('model'): one saved with -save_format safetensors "
                             "needs weights=<the .safetensors file>")
        if "generator" in checkpoint and checkpoint["generator"] is None:
            raise ValueError("the checkpoint's generator is None: a LoRA checkpoint holds only the LoRA weights "
                             "(lora_layers / lora_embedding); merge them with OpenNMT-py's tools/lora_weights.py first")
        model, generator = checkpoint["model"], checkpoint.get("generator", {})
        if not isinstance(model, dict) or not isinstance(generator, dict):
            raise ValueError("checkpoint['model'] and checkpoint['generator'] must be state dicts")
        raw = dict(model)
        for k, v in generator.items():
            if f"generator.{k}" in raw:
                raise ValueError(f"checkpoint has 'generator.{k}' both in 'model' and in 'generator'")
            raw[f"generator.{k}"] = v
    state = {}
    for name, value in raw.items():
        if not isinstance(name, str):
            raise ValueError(f"checkpoint state-dict key {name!r} is not a str")
        # generator "0.weight" (a Sequential(Linear, ...) up to 3.0.3): OpenNMT's load_checkpoint renames it too
        name = re.sub(r"^generator\.0\.", "generator.", name)
        if name in state:
            raise ValueError(f"checkpoint has {name!r} twice (as generator.* and generator.0.*)")
        state[name] = _float32(name, value)
    for name in state:
        for pattern, why in _REFUSED_KEYS:
            if re.search(pattern, name):
                raise ValueError(f"checkpoint tensor {name!r}: {why}")
    return state


def _lstm_layers(state: dict, template: str, side: str) -> int:
    L = 0
    while template.format(k=L, w="weight_ih") in state:
        L += 1
    if L == 0:
        raise ValueError(f"the checkpoint has no {template.format(k=0, w='weight_ih')!r}: not an OpenNMT-py RNN "
                         f"{side} (encoder_type/decoder_type rnn)")
    for k in range(L):
        w_hh = state.get(template.format(k=k, w="weight_hh"))
        if w_hh is None or w_hh.ndim != 2:
            raise ValueError(f"the checkpoint has no 2-D {template.format(k=k, w='weight_hh')!r}")
        if w_hh.shape[0] != 4 * w_hh.shape[1]:
            raise ValueError(f"{template.format(k=k, w='weight_hh')!r} has shape {w_hh.shape}: an LSTM's is "
                             f"[4H, H]; {w_hh.shape[0] // max(w_hh.shape[1], 1)}H rows is another cell (rnn_type "
                             "GRU/SRU?), and s2sext's recurrent layers are LSTMs")
    return L


def _architecture(state: dict) -> dict:
    for name, ndim in ((SRC_EMB, 2), (TGT_EMB, 2), ("generator.weight", 2), ("generator.bias", 1)):
        if name not in state:
            raise ValueError(f"the checkpoint has no {name!r}: not an OpenNMT-py RNN model")
        if state[name].ndim != ndim:
            raise ValueError(f"checkpoint tensor {name!r} has shape {state[name].shape}; expected {ndim} dimensions")
    L_enc = _lstm_layers(state, "encoder.rnn.{w}_l{k}", "encoder")
    # brnn: one nn.LSTM(bidirectional=True) of hidden_size/2 per direction (onmt/encoders/rnn_encoder.py)
    brnn = "encoder.rnn.weight_ih_l0_reverse" in state
    if brnn:
        L_rev = _lstm_layers(state, "encoder.rnn.{w}_l{k}_reverse", "encoder")
        if L_rev != L_enc:
            raise ValueError(f"the encoder has {L_enc} forward and {L_rev} reverse layers")
    feed = "decoder.rnn.layers.0.weight_ih" in state
    decoder = "decoder.rnn.layers.{k}.{w}" if feed else "decoder.rnn.{w}_l{k}"
    L = _lstm_layers(state, decoder, "decoder")
    H = state["encoder.rnn.weight_hh_l0"].shape[1] * (2 if brnn else 1)
    H_dec = state[decoder.format(k=0, w="weight_hh")].shape[1]
    E, E_tgt = state[SRC_EMB].shape[1], state[TGT_EMB].shape[1]
    if L_enc != L:
        raise ValueError(f"the encoder has {L_enc} layers and the decoder {L}; s2sext uses one num_layers for both")
    if H_dec != H:
        raise ValueError(f"the encoder's hidden size is {H} and the decoder's {H_dec}; s2sext uses one hidden_size")
    if E_tgt != E:
        raise ValueError(f"src_word_vec_size {E} and tgt_word_vec_size {E_tgt} differ; s2sext uses one embed_size")
    V = state[TGT_EMB].shape[0]  # the generator's rows follow the target vocabulary
    for name, shape in (("generator.weight", (V, H)), ("generator.bias", (V,))):
        if state[name].shape != shape:
            raise ValueError(f"checkpoint tensor {name!r} has shape {state[name].shape}; expected {shape} "
                             f"({V} target tokens, hidden size {H})")
    if "decoder.attn.linear_in.weight" in state:
        attention = "general"
    elif "decoder.attn.linear_query.weight" in state:
        attention = "mlp"
    elif "decoder.attn.linear_out.weight" in state:
        attention = "dot"
    else:
        attention = "none"
    if attention == "none" and feed:
        raise ValueError("input_feed 1 with global_attention 'none' feeds the LSTM output back into the next step, "
                         "which s2sext's input feeding (needs attention) does not express")
    return {"L": L, "H": H, "E": E, "input_feed": feed, "attention": attention, "brnn": brnn}


def _prepared(state: dict, arch: dict, src_perm, tgt_perm) -> dict:
    """OpenNMT name -> the array s2sext takes; consumes ``state`` and refuses what is left over.

    The differences that are not renames: the rows follow the s2sext ids; OpenNMT's general score
    (W_in h_t) . h_s is s2sext's h_t . (W_a h_s) with W_a = W_in^T; mlp's v is a [1, H] linear
    layer, s2sext's a vector; dot/general's output layer has no bias: s2sext's is 0.
    """
    prepared = {SRC_EMB: _rows(state.pop(SRC_EMB), src_perm), TGT_EMB: _rows(state.pop(TGT_EMB), tgt_perm),
                "generator.weight": _rows(state.pop("generator.weight"), tgt_perm),
                "generator.bias": _rows(state.pop("generator.bias"), tgt_perm)}
    decoder = "decoder.rnn.layers.{k}.{w}" if arch["input_feed"] else "decoder.rnn.{w}_l{k}"
    templates = ("encoder.rnn.{w}_l{k}", decoder) + (("encoder.rnn.{w}_l{k}_reverse",) if arch["brnn"] else ())
    copied = [template.format(k=k, w=w) for template in templates for k in range(arch["L"])
              for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    if arch["attention"] != "none":
        copied.append("decoder.attn.linear_out.weight")
    if arch["attention"] == "mlp":  # out_bias = attn_type == "mlp" (onmt/modules/global_attention.py)
        copied += ["decoder.attn.linear_out.bias", "decoder.attn.linear_query.weight",
                   "decoder.attn.linear_query.bias", "decoder.attn.linear_context.weight"]
    for name in copied:
        if name not in state:
            raise ValueError(f"the checkpoint has no {name!r}")
        prepared[name] = state.pop(name)
    if arch["attention"] == "general":
        prepared["decoder.attn.linear_in.weight"] = np.ascontiguousarray(state.pop("decoder.attn.linear_in.weight").T)
    if arch["attention"] == "mlp":
        v = state.pop("decoder.attn.v.weight", None)
        if v is None or v.shape != (1, arch["H"]):
            raise ValueError(f"the checkpoint's 'decoder.attn.v.weight' is {None if v is None else v.shape}; "
                             f"mlp attention's is (1, {arch['H']})")
        prepared["decoder.attn.v.weight"] = np.ascontiguousarray(v[0])
    elif arch["attention"] != "none":
        prepared["decoder.attn.linear_out.bias"] = np.zeros(arch["H"], np.float32)
    if state:
        raise ValueError(f"checkpoint tensors that no s2sext parameter takes: {sorted(state)} (an OpenNMT-py model "
                         "s2sext does not import: a Transformer or CNN, or an option it does not express)")
    return prepared


def from_opennmt(checkpoint, weights=None, return_info=False):
    """An :class:`s2sext.Seq2Seq` holding an OpenNMT-py RNN model's weights.

    Parameters
    ----------
    checkpoint : str, os.PathLike or dict
        A ``.pt`` checkpoint of OpenNMT-py 1.x, 2.x or 3.x (read with :func:`load_checkpoint`), or
        the dict it holds.
    weights : str, os.PathLike or None
        The ``.safetensors`` file of a checkpoint saved with ``-save_format safetensors``.
    return_info : bool
        Also return a JSON-ready dict describing the source (for ``Seq2Seq.save(extra=...)``).

    The model uses word tokenizers (tokens split on whitespace) and no dropout. OpenNMT-py runs its
    ``transforms`` (onmt_tokenize, sentencepiece, bpe, ...) on the text; s2sext does not, so feed
    it text tokenized the same way (a warning lists the checkpoint's transforms).

    Raises
    ------
    ValueError
        The checkpoint uses something s2sext cannot express exactly (the message names the option
        or the tensor), its options disagree with its weights, its vocabularies cannot be mapped,
        or a file is unreadable or unsafe.
    """
    source = checkpoint
    if not isinstance(checkpoint, dict):
        checkpoint = load_checkpoint(_path(checkpoint, "checkpoint (a path or the dict it holds)"))
    opt = _options(checkpoint)
    _check_options(opt)
    layout, src_entry, tgt_entry = _vocab_entries(checkpoint)
    state = _state_dict(checkpoint, weights)
    arch = _architecture(state)
    _cross_check(opt, arch)
    src_tokens, src_perm = _vocab("src", src_entry, state[SRC_EMB].shape[0], required=("<unk>",))
    tgt_tokens, tgt_perm = _vocab("tgt", tgt_entry, state[TGT_EMB].shape[0], required=SPECIALS)

    prepared = _prepared(state, arch, src_perm, tgt_perm)
    # mlp: v . tanh(W_q h_t + b_q + W_c h_s) is concat with the query bias, and its output layer
    # linear_out([c ; h_t]) has a bias and no tanh (onmt/modules/global_attention.py)
    mlp = arch["attention"] == "mlp"
    attention = {"none": None, "mlp": "concat"}.get(arch["attention"], arch["attention"])
    model = seq2seq_from_state_dict(
        prepared, src_tokens, tgt_tokens, names=_NAMES,
        decoder_cells="decoder.rnn.layers.{k}" if arch["input_feed"] else None,
        embed_size=arch["E"], hidden_size=arch["H"], num_layers=arch["L"], attention=attention,
        attention_style="luong", input_feeding=arch["input_feed"], dropout=0.0, src_tokenizer="word",
        tgt_tokenizer="word", bidirectional=arch["brnn"], bridge="concat" if arch["brnn"] else "linear",
        attention_query_bias=mlp, combine_activation="none" if mlp else "tanh",
    )
    transforms = opt.get("transforms") or []
    transforms = ([str(t) for t in transforms] if isinstance(transforms, (list, tuple))
                  else sorted(map(str, transforms)) if isinstance(transforms, set) else [str(transforms)])
    if transforms:
        warnings.warn(
            f"the OpenNMT-py model was trained with transforms {transforms}, which s2sext does not run: feed it text "
            "already tokenized (space-separated) the same way", UserWarning, stacklevel=2)
    if not return_info:
        return model
    info = {"format": "opennmt-py", "layout": layout, "transforms": transforms,
            "global_attention": arch["attention"], "input_feed": int(arch["input_feed"]),
            "encoder_type": "brnn" if arch["brnn"] else "rnn"}
    if not isinstance(source, dict):
        info["checkpoint"] = os.path.basename(os.fspath(source))
    return model, info


def convert_file(checkpoint, out, weights=None):
    """Convert an OpenNMT-py checkpoint (see :func:`from_opennmt`) and save it as the s2sext model
    file ``out``, with ``extra={"imported_from": info}``; returns the model."""
    model, info = from_opennmt(checkpoint, weights=weights, return_info=True)
    model.save(out, extra={"imported_from": info})
    return model
