"""A Seq2Seq in a model file: the header that :meth:`s2sext.Seq2Seq.save` writes and the checks of
docs/model-format.md ("The Seq2Seq header") that a loader applies to it (``model_file.cpp`` applies
the same ones in C++). Both :meth:`s2sext.Seq2Seq.load` and :meth:`s2sext.Decoder.load` read
through :func:`read_seq2seq`.

A file may store its matrices (the 2-D parameters) in int8 (docs/model-format.md, "int8
parameters"): the matrix ``NAME`` as int8 ``[N, K]`` and its row scales as the float32 tensor
``NAME.scale`` ``[N]``, by the one int8 rule (``_core.quantize_int8``, ``runtime/quantize.h``).
:func:`parameter_tensors` writes them, :func:`seq2seq_from_header` checks them and gives the
float32 values they stand for (``_core.dequantize_int8``).
"""

from __future__ import annotations

import numpy as np

from . import _core
from .config import VERSION_DEFAULTS, Config
from .serialize import ModelFileError, read_model_file
from .spec import (DTYPE, MAX_SENTENCEPIECE_BYTES, SENTENCEPIECE_TENSOR, SHARED_SENTENCEPIECE_TENSOR, aligned_array,
                   iter_parameter_shapes)
from .text import SentencePieceTokenizer, Vocab, get_tokenizer

__all__ = ["FILE_KIND", "STORAGE_DTYPES", "SCALE_SUFFIX", "file_header", "tokenizer_tensors", "parameter_tensors",
           "int8_parameters", "seq2seq_from_header", "read_seq2seq"]

FILE_KIND = "s2sext-seq2seq"
# How Seq2Seq.save may store the parameters: as they are, or every matrix in int8 (the vectors stay float32)
STORAGE_DTYPES = ("float32", "int8")
# an int8 matrix NAME's row scales are the tensor NAME + SCALE_SUFFIX
SCALE_SUFFIX = ".scale"


def file_header(config: Config, src_vocab: Vocab, tgt_vocab: Vocab, extra: dict | None = None) -> dict:
    """The header a model file of this Seq2Seq holds (version 1 where ``config`` allows it)."""
    header = {
        "kind": FILE_KIND,
        "version": config.file_version,
        "config": config.as_file_dict(),
        "src_vocab": list(src_vocab.tokens),
        "tgt_vocab": list(tgt_vocab.tokens),
    }
    if extra:
        header["extra"] = extra
    return header


def tokenizer_tensors(src_tokenizer, tgt_tokenizer) -> dict:
    """The tensors that store a model's sentencepiece models (docs/model-format.md): none for char
    and word sides, one per sentencepiece side, or one in all when both sides have the same model."""
    models = {side: tokenizer.model for side, tokenizer in (("src", src_tokenizer), ("tgt", tgt_tokenizer))
              if isinstance(tokenizer, SentencePieceTokenizer)}
    if len(models) == 2 and models["src"] == models["tgt"]:
        return {SHARED_SENTENCEPIECE_TENSOR: np.frombuffer(models["src"], np.uint8)}
    return {SENTENCEPIECE_TENSOR.format(side=side): np.frombuffer(model, np.uint8) for side, model in models.items()}


def parameter_tensors(params: dict, dtype: str = "float32") -> dict:
    """The tensors that store ``params`` (a model's parameters, float32, in the model's order) in a
    file: ``params`` itself for ``dtype="float32"``; for ``"int8"`` every 2-D parameter as int8
    ``[N, K]`` followed by its row scales ``NAME.scale`` (float32 ``[N]``), by the int8 rule
    (``_core.quantize_int8``), and the other parameters as they are. A matrix that is already the
    dequantized form of int8 values (a model loaded from an int8 file) is stored as exactly those
    values: the rule is idempotent. ValueError for another dtype or a matrix with NaN or Inf."""
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(map(repr, STORAGE_DTYPES))}; got {dtype!r:.60}")
    if dtype == "float32":
        return params
    tensors = {}
    for name, value in params.items():
        if value.ndim != 2:
            tensors[name] = value
            continue
        if not np.isfinite(value).all():
            raise ValueError(f"parameter {name!r} holds NaN or Inf; an int8 file stores finite matrices only")
        q, scale = _core.quantize_int8(value)
        # The stored values are a fixed point of the rule (quantize(dequantize(q, scale)) == (q, scale)),
        # which readers require. quantize.h proves it for normal scales; a row whose scale is
        # subnormal (largest |w| below 127 * FLT_MIN) may need the rule applied once more.
        for _ in range(4):
            again = _core.quantize_int8(_core.dequantize_int8(q, scale))
            if np.array_equal(again[0], q) and np.array_equal(again[1].view(np.uint32), scale.view(np.uint32)):
                break
            q, scale = again
        else:
            raise ValueError(f"parameter {name!r}: the int8 rule found no fixed point for its rows")
        tensors[name] = q
        tensors[name + SCALE_SUFFIX] = scale
    return tensors


def int8_parameters(config: Config, tensors: dict) -> list:
    """The names of the parameters of ``config`` that ``tensors`` (a file's) stores in int8."""
    return [name for name, _ in iter_parameter_shapes(config)
            if name in tensors and tensors[name].dtype == np.int8]


def _int8_values(name: str, q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The float32 values of the int8 matrix ``q`` with its row scales (shapes already checked);
    ValueError unless every row is as the int8 rule stores it, the fixed point that readers rely on."""
    if (q == -128).any():
        row = int(np.argwhere(q == -128)[0][0])
        raise ValueError(f"parameter {name!r} row {row} holds -128; int8 values are in [-127, 127]")
    bad = ~np.isfinite(scale) | np.signbit(scale)
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(f"{name + SCALE_SUFFIX!r} row {row} is {float(scale[row])!r}; a scale is a finite "
                         "float32 >= +0.0")
    values = _core.dequantize_int8(q, scale)
    overflow = ~np.isfinite(values).all(axis=1)
    if overflow.any():
        row = int(np.argmax(overflow))
        raise ValueError(f"{name + SCALE_SUFFIX!r} row {row} is {float(scale[row])!r}; q * scale overflows float32 "
                         "(a scale is at most the largest float32 / 127)")
    again, again_scale = _core.quantize_int8(values)
    differ = (again != q).any(axis=1) | (again_scale.view(np.uint32) != scale.view(np.uint32))
    if differ.any():
        row = int(np.argmax(differ))
        raise ValueError(f"parameter {name!r} row {row} is not as the int8 rule stores it (its largest |q| must be "
                         "127, or the row all 0 with scale 0; quantizing its values again gives other bytes)")
    return values


def _side_tokenizer(side: str, name: str, lowercase: bool, vocab: Vocab, tensors: dict):
    """The tokenizer of one side (``"src"``/``"tgt"``) of a file, lowercasing as the configuration
    says: a sentencepiece side's model from its tensor, checked to be a sentencepiece model whose
    pieces are the side's vocabulary."""
    if name != SentencePieceTokenizer.name:
        return get_tokenizer(name, lowercase=lowercase)
    tensor_name = SENTENCEPIECE_TENSOR.format(side=side)
    if tensor_name not in tensors:
        tensor_name = SHARED_SENTENCEPIECE_TENSOR
    blob = tensors.get(tensor_name)
    if blob is None:
        raise ValueError(f"{side}_tokenizer is 'sentencepiece' and the file holds neither the tensor "
                         f"{SENTENCEPIECE_TENSOR.format(side=side)!r} nor {SHARED_SENTENCEPIECE_TENSOR!r}")
    if blob.dtype != np.uint8 or blob.ndim != 1 or not 1 <= blob.size <= MAX_SENTENCEPIECE_BYTES:
        raise ValueError(f"tensor {tensor_name!r} has shape {blob.shape} dtype {blob.dtype}; a sentencepiece model "
                         f"is 1 to {MAX_SENTENCEPIECE_BYTES} uint8 bytes [n]")
    try:
        tokenizer = SentencePieceTokenizer(blob.tobytes(), lowercase)
    except ValueError as exc:
        raise ValueError(f"tensor {tensor_name!r}: {exc}") from None
    if tokenizer.vocab() != vocab:
        raise ValueError(f"{side}_vocab is not the vocabulary of the sentencepiece model {tensor_name!r} "
                         "(its pieces but the control, unknown and unused ones, after the four specials)")
    return tokenizer


def seq2seq_from_header(header: dict, tensors: dict) -> tuple[Config, Vocab, Vocab, dict, tuple]:
    """``(config, src_vocab, tgt_vocab, params, tokenizers)`` of a file's header and tensors,
    checked by the rules of docs/model-format.md ("The Seq2Seq header") before any array is copied
    (KeyError, TypeError or ValueError otherwise); every check's work is bounded by the size of the
    header and of ``tensors``. ``params`` holds aligned copies of the model's tensors, in the
    model's order; ``tokenizers`` is (source's, target's), a sentencepiece side's with its stored
    model (which needs the sentencepiece package: SentencePieceUnavailableError otherwise). An int8
    matrix's parameter is the float32 values it stands for (``_core.dequantize_int8``)."""
    if not isinstance(header, dict) or header.get("kind") != FILE_KIND:
        kind = header.get("kind") if isinstance(header, dict) else None
        raise ValueError(f"header kind is {kind!r:.60}, expected {FILE_KIND!r}")
    version = header.get("version")
    if type(version) is not int or version not in (1, *VERSION_DEFAULTS):
        raise ValueError(f"model version {version!r:.60} is not supported (expected the integer 1, 2 or 3)")
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
    # An int8 matrix is checked here for its shapes and its scales' presence; its values after the
    # loop, against the int8 rule (work in proportion to the file's size).
    found = []
    for name, shape in iter_parameter_shapes(config):
        value = tensors.get(name)
        scale_name = name + SCALE_SUFFIX
        if value is None:
            raise ValueError(f"parameter {name!r} is missing")
        if value.dtype == np.int8:
            if len(shape) != 2:
                raise ValueError(f"parameter {name!r} is int8; only matrices ([N, K]) may be stored in int8, "
                                 f"its shape is {shape}")
            if value.shape != shape:
                raise ValueError(f"parameter {name!r} has shape {value.shape} dtype int8; expected {shape}")
            scale = tensors.get(scale_name)
            if scale is None:
                raise ValueError(f"parameter {name!r} is int8 and the file lacks its scales {scale_name!r}")
            if scale.shape != shape[:1] or scale.dtype != DTYPE:
                raise ValueError(f"tensor {scale_name!r} has shape {scale.shape} dtype {scale.dtype}; "
                                 f"expected {shape[:1]} float32, the scales of the int8 matrix {name!r}")
            found.append((name, (value, scale)))
            continue
        if value.shape != shape or value.dtype != DTYPE:
            raise ValueError(f"parameter {name!r} has shape {value.shape} dtype {value.dtype}; expected {shape} float32")
        if scale_name in tensors:
            raise ValueError(f"tensor {scale_name!r} holds int8 scales, but parameter {name!r} is float32")
        found.append((name, value))
    found = [(name, _int8_values(name, *value) if isinstance(value, tuple) else value) for name, value in found]
    tokenizers = (_side_tokenizer("src", config.src_tokenizer, config.src_lowercase, src_vocab, tensors),
                  _side_tokenizer("tgt", config.tgt_tokenizer, config.tgt_lowercase, tgt_vocab, tensors))
    return config, src_vocab, tgt_vocab, {name: aligned_array(value) for name, value in found}, tokenizers


def read_seq2seq(path, return_extra: bool = False):
    """``(config, src_vocab, tgt_vocab, params, tokenizers)`` of the model file ``path``, and with
    ``return_extra`` also the header's ``extra`` dict and the tensors that are neither parameters
    nor tokenizer models. Raises ``ModelFileError`` (a ValueError) if the file is not a complete,
    consistent s2sext model."""
    header, tensors = read_model_file(path)
    try:
        config, src_vocab, tgt_vocab, params, tokenizers = seq2seq_from_header(header, tensors)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: not a valid s2sext model: {exc}") from None
    if return_extra:
        scales = {name + SCALE_SUFFIX for name in int8_parameters(config, tensors)}
        stored = set(params) | scales | set(tokenizer_tensors(*tokenizers))
        extra_tensors = {k: v for k, v in tensors.items() if k not in stored}
        return config, src_vocab, tgt_vocab, params, tokenizers, header.get("extra", {}), extra_tensors
    return config, src_vocab, tgt_vocab, params, tokenizers
