"""s2sext: sequence-to-sequence models with attention, on C++ LSTM and attention kernels.

* :mod:`s2sext.ops` -- the kernels (numpy in, numpy out, forward and backward).
* :class:`Seq2Seq` -- the model: encoder, decoder, attention (Luong or Bahdanau), training
  (:mod:`s2sext.train`), greedy and beam decoding (:mod:`s2sext.decoding`), one-file save/load.
* :class:`Decoder` -- a trained model compiled for inference: encoder and greedy/beam decoding in
  C++ (``model.compile()``, ``Decoder.load(path)``).
* :mod:`s2sext.data` -- tokenizers, vocabularies, TSV files and the built-in tasks.

``import s2sext`` needs numpy only (never torch).
"""

from . import data, decoding, ops, train
from ._core import cpu_info, get_num_threads, set_kernel_path, set_num_threads, set_recurrent_backend
from .engine import Decoder
from .model import Attention, Config, Encoder, RecurrentDecoder, Seq2Seq
from .serialize import ModelFileError
from .text import Vocab

__version__ = "0.1.0"

__all__ = [
    "ops",
    "data",
    "train",
    "decoding",
    "Seq2Seq",
    "Encoder",
    "Decoder",
    "RecurrentDecoder",
    "Attention",
    "Config",
    "Vocab",
    "ModelFileError",
    "cpu_info",
    "set_kernel_path",
    "set_recurrent_backend",
    "set_num_threads",
    "get_num_threads",
    "__version__",
]
