"""A Seq2Seq in a model file: the header that :meth:`s2sext.Seq2Seq.save` writes and the checks of
docs/model-format.md ("The Seq2Seq header") that a loader applies to it (``model_file.cpp`` applies
the same ones in C++). Both :meth:`s2sext.Seq2Seq.load` and :meth:`s2sext.Decoder.load` read
through :func:`read_seq2seq`.
"""

from __future__ import annotations

import numpy as np

from .config import VERSION_DEFAULTS, Config
from .serialize import ModelFileError, read_model_file
from .spec import (DTYPE, MAX_SENTENCEPIECE_BYTES, SENTENCEPIECE_TENSOR, SHARED_SENTENCEPIECE_TENSOR, aligned_array,
                   iter_parameter_shapes)
from .text import SentencePieceTokenizer, Vocab, get_tokenizer

__all__ = ["FILE_KIND", "file_header", "tokenizer_tensors", "seq2seq_from_header", "read_seq2seq"]

FILE_KIND = "s2sext-seq2seq"


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
    model (which needs the sentencepiece package: SentencePieceUnavailableError otherwise)."""
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
    found = []
    for name, shape in iter_parameter_shapes(config):
        value = tensors.get(name)
        if value is None:
            raise ValueError(f"parameter {name!r} is missing")
        if value.shape != shape or value.dtype != DTYPE:
            raise ValueError(f"parameter {name!r} has shape {value.shape} dtype {value.dtype}; expected {shape} float32")
        found.append((name, value))
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
        stored = set(params) | set(tokenizer_tensors(*tokenizers))
        extra_tensors = {k: v for k, v in tensors.items() if k not in stored}
        return config, src_vocab, tgt_vocab, params, tokenizers, header.get("extra", {}), extra_tensors
    return config, src_vocab, tgt_vocab, params, tokenizers
