"""The model's configuration: :class:`Config`, everything that fixes a Seq2Seq's shapes and
behaviour, with the rules of docs/model-format.md ("The Seq2Seq header") that a saved one obeys."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .checks import check_bool, check_int, check_real, short_repr
from .spec import (ATTENTION_KINDS, ATTENTION_STYLES, BRIDGES, COMBINE_ACTIVATIONS, DTYPE, TOKENIZER_NAMES,
                   decoder_input_size, encoder_hidden_size, iter_parameter_shapes)

__all__ = ["Config", "VERSION_DEFAULTS", "VERSION2_DEFAULTS"]

# The configuration keys that each Seq2Seq header version after 1 adds, with their defaults
# (docs/model-format.md): a version-V header has version 1's keys and those of every version up to V.
# A model is written as the lowest version whose keys hold every value it has set, so a model that
# needs no later key is written byte for byte as before that version existed. The lowercase keys are
# a version of their own because version-2 files were written before they existed.
VERSION_DEFAULTS = {
    2: {"bridge": "linear", "combine_activation": "tanh", "attention_query_bias": False},
    3: {"src_lowercase": False, "tgt_lowercase": False},
}
# the keys version 2 adds (s2sext.model exports this name)
VERSION2_DEFAULTS = VERSION_DEFAULTS[2]


def _either(choices) -> str:
    """``('a', 'b')`` -> ``"'a' or 'b'"``."""
    return " or ".join(repr(choice) for choice in choices)


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
    # each side's text lowercased before it is tokenized (text.py's tokenizers, lowercase=True)
    src_lowercase: bool = False
    tgt_lowercase: bool = False

    def validate(self) -> None:
        """The rules of docs/model-format.md ("The Seq2Seq header"), which the C++ loader applies
        too: types, ranges, and sizes whose every parameter fits a model file (below 2**63 bytes)."""
        for name in ("embed_size", "hidden_size", "num_layers", "max_source_length"):
            check_int(getattr(self, name), name, 1, 2**63 - 1, expected="an integer in [1, 2**63)")
        for name in ("src_vocab_size", "tgt_vocab_size"):
            check_int(getattr(self, name), name, 5, 2**63 - 1, expected="an integer in [5, 2**63)")
        check_real(self.dropout, "dropout", 0, 1, open_maximum=True)
        if self.attention is not None and self.attention not in ATTENTION_KINDS:
            raise ValueError(
                f"attention must be None or one of {', '.join(ATTENTION_KINDS)}; got {short_repr(self.attention)}"
            )
        if self.attention_style not in ATTENTION_STYLES:
            raise ValueError(
                f"attention_style must be {_either(ATTENTION_STYLES)}; got {short_repr(self.attention_style)}")
        if self.attention is None and self.attention_style != "luong":
            raise ValueError("attention_style='bahdanau' needs an attention kind; got attention=None")
        if self.input_feeding and (self.attention is None or self.attention_style != "luong"):
            raise ValueError("input_feeding needs Luong-style attention (attention_style='luong', attention set)")
        for name in ("bidirectional", "input_feeding", "reverse_source", "attention_query_bias", "src_lowercase",
                     "tgt_lowercase"):
            check_bool(getattr(self, name), name)
        if self.bridge not in BRIDGES:
            raise ValueError(f"bridge must be {_either(BRIDGES)}; got {short_repr(self.bridge)}")
        if self.bridge == "concat" and not (self.bidirectional and self.hidden_size % 2 == 0):
            raise ValueError(
                "bridge='concat' needs bidirectional=True and an even hidden_size (each direction has "
                f"hidden_size/2 units); got bidirectional={short_repr(self.bidirectional)}, "
                f"hidden_size={short_repr(self.hidden_size)}"
            )
        if self.combine_activation not in COMBINE_ACTIVATIONS:
            raise ValueError(f"combine_activation must be {_either(COMBINE_ACTIVATIONS)}; "
                             f"got {short_repr(self.combine_activation)}")
        if self.combine_activation != "tanh" and self.attention is None:
            raise ValueError("combine_activation='none' needs an attention kind (without attention there is no combine layer)")
        if self.attention_query_bias and self.attention != "concat":
            raise ValueError(f"attention_query_bias needs attention='concat'; got attention={short_repr(self.attention)}")
        for name in ("src_tokenizer", "tgt_tokenizer"):
            if not isinstance(getattr(self, name), str) or getattr(self, name) not in TOKENIZER_NAMES:
                raise ValueError(f"{name} must be one of {list(TOKENIZER_NAMES)}, got {short_repr(getattr(self, name))}")
        # Layers past the second repeat the second's shapes, so two layers show every shape (the
        # check stays O(1) for any num_layers).
        for name, shape in iter_parameter_shapes(self, max_layers=2):
            if math.prod(shape) * DTYPE().itemsize >= 2**63:
                raise ValueError(f"the configuration's parameter {short_repr(name)} of shape {shape} is too large to store")

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @property
    def file_version(self) -> int:
        """The Seq2Seq header version this configuration is saved as: the highest version of
        ``VERSION_DEFAULTS`` that adds a key without its default here, or 1 when there is none."""
        return max((version for version, defaults in VERSION_DEFAULTS.items()
                    if any(getattr(self, k) != v for k, v in defaults.items())), default=1)

    def as_file_dict(self) -> dict:
        """The configuration as a model file stores it: without the keys of versions after its
        :attr:`file_version`."""
        return {k: getattr(self, k) for k in self.file_keys(self.file_version)}

    @classmethod
    def file_keys(cls, version: int) -> list[str]:
        """The keys of a saved configuration of header ``version`` (1, 2 or 3), in field order:
        all but those that later versions add."""
        later = {k for v, defaults in VERSION_DEFAULTS.items() if v > version for k in defaults}
        return [k for k in cls.__dataclass_fields__ if k not in later]

    @classmethod
    def from_dict(cls, d: dict, version: int = max(VERSION_DEFAULTS)) -> "Config":
        """A validated Config from a dict with exactly the keys of a saved configuration of this
        header ``version`` (:meth:`file_keys`; the keys of later versions take their defaults)."""
        if not isinstance(d, dict):
            raise TypeError(f"the configuration must be a dict; got {type(d).__name__}")
        fields = cls.file_keys(version)
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
        return encoder_hidden_size(self)

    @property
    def decoder_input_size(self) -> int:
        """The first decoder layer's input size (``J_0`` of docs/model.md)."""
        return decoder_input_size(self)
