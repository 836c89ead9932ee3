"""A Seq2Seq in a model file: the header that :meth:`s2sext.Seq2Seq.save` writes and the checks of
docs/model-format.md ("The Seq2Seq header") that a loader applies to it (``model_file.cpp`` applies
the same ones in C++). Both :meth:`s2sext.Seq2Seq.load` and :meth:`s2sext.Decoder.load` read
through :func:`read_seq2seq`.
"""

from __future__ import annotations

from .config import Config
from .serialize import ModelFileError, read_model_file
from .spec import DTYPE, aligned_array, iter_parameter_shapes
from .text import Vocab

__all__ = ["FILE_KIND", "file_header", "seq2seq_from_header", "read_seq2seq"]

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


def seq2seq_from_header(header: dict, tensors: dict) -> tuple[Config, Vocab, Vocab, dict]:
    """``(config, src_vocab, tgt_vocab, params)`` of a file's header and tensors, checked by the
    rules of docs/model-format.md ("The Seq2Seq header") before any array is copied (KeyError,
    TypeError or ValueError otherwise); every check's work is bounded by the size of the header and
    of ``tensors``. ``params`` holds aligned copies of the model's tensors, in the model's order."""
    if not isinstance(header, dict) or header.get("kind") != FILE_KIND:
        kind = header.get("kind") if isinstance(header, dict) else None
        raise ValueError(f"header kind is {kind!r:.60}, expected {FILE_KIND!r}")
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
    return config, src_vocab, tgt_vocab, {name: aligned_array(value) for name, value in found}


def read_seq2seq(path, return_extra: bool = False):
    """``(config, src_vocab, tgt_vocab, params)`` of the model file ``path``, and with
    ``return_extra`` also the header's ``extra`` dict and the tensors that are not parameters.
    Raises ``ModelFileError`` (a ValueError) if the file is not a complete, consistent s2sext model."""
    header, tensors = read_model_file(path)
    try:
        config, src_vocab, tgt_vocab, params = seq2seq_from_header(header, tensors)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: not a valid s2sext model: {exc}") from None
    if return_extra:
        extra_tensors = {k: v for k, v in tensors.items() if k not in params}
        return config, src_vocab, tgt_vocab, params, header.get("extra", {}), extra_tensors
    return config, src_vocab, tgt_vocab, params
