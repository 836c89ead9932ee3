"""The compiled decoder: a trained :class:`s2sext.Seq2Seq` prepared once, then the encoder and the
whole greedy or beam decode run in C++ (``src/cpp/engine.cpp``) with the GIL released.

One Python call per batch of inputs, no Python per step. A :class:`Decoder` is immutable: any
number of Python threads may decode with one at once (``serial=True`` keeps each call on its own
thread, so that concurrent calls scale with the cores instead of queueing for s2sext's pool).
"""

from __future__ import annotations

import numpy as np

from . import _core
from .data import PAD_ID, Vocab, get_tokenizer, pad_batch
from .decoding import check_beam_args, check_lengths

DTYPES = ("float32", "bfloat16")


class Decoder:
    """A compiled Seq2Seq for inference.

    Build one with ``model.compile(dtype)`` or ``Decoder.load(path, dtype)``. ``dtype="bfloat16"``
    stores the LSTM (encoder and decoder), combine and output matrices as bfloat16 and computes in
    float32: half the bytes per step.
    """

    def __init__(self, config: dict, params: dict, src_vocab: Vocab, tgt_vocab: Vocab, dtype: str = "float32"):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {dtype!r}")
        self.config = dict(config)
        self.src_vocab = src_vocab
        self.tgt_vocab = tgt_vocab
        self.dtype = dtype
        self._engine = _core.Engine(self.config, {k: np.asarray(v, np.float32) for k, v in params.items()}, dtype)

    @classmethod
    def from_model(cls, model, dtype: str = "float32") -> "Decoder":
        return cls(model.config.as_dict(), model.params, model.src_vocab, model.tgt_vocab, dtype)

    @classmethod
    def load(cls, path, dtype: str = "float32") -> "Decoder":
        """Compile a model file written by ``Seq2Seq.save`` (ModelFileError if it is not one)."""
        from .model import Seq2Seq

        return cls.from_model(Seq2Seq.load(path), dtype)

    def greedy(self, src_ids, lengths=None, max_length=50, min_length=0, serial=False):
        """Greedy decoding: int [B, S] -> int [B, T], as :meth:`s2sext.Seq2Seq.greedy` (each row up
        to and including ``<eos>``, then ``<pad>``; ``T <= max_length``)."""
        check_lengths(max_length, min_length)
        return self._engine.greedy(src_ids, lengths, int(max_length), int(min_length), bool(serial))

    def beam(self, src_ids, lengths=None, beam_size=5, max_length=50, min_length=0, n_best=1,
             length_penalty=0.0, serial=False):
        """Beam search with the rules of :func:`s2sext.decoding.beam_search`.

        Returns
        -------
        ids : int [B, T] (``n_best == 1``) or [B, n_best, T]
            Hypotheses best first, padded with ``<pad>``; a missing hypothesis is all ``<pad>``.
        scores : float [B] or [B, n_best]
            ``log P / ((5 + |Y|) / 6) ** length_penalty``; ``-inf`` for a missing hypothesis.
        """
        results = self.hypotheses(src_ids, lengths, beam_size, max_length, min_length, n_best, length_penalty,
                                  serial)
        B = len(results)
        T = max((len(h[0]) for hyps in results for h in hyps), default=1)
        ids = np.full((B, n_best, T), PAD_ID, np.int64)
        scores = np.full((B, n_best), -np.inf)
        for b, hyps in enumerate(results):
            for j, (tokens, score, _) in enumerate(hyps):
                ids[b, j, : len(tokens)] = tokens
                scores[b, j] = score
        if n_best == 1:
            return ids[:, 0], scores[:, 0]
        return ids, scores

    def hypotheses(self, src_ids, lengths=None, beam_size=5, max_length=50, min_length=0, n_best=1,
                   length_penalty=0.0, serial=False):
        """Beam search as lists: per input up to ``n_best`` tuples ``(tokens int [n], score,
        log_prob)``, best first."""
        check_lengths(max_length, min_length)
        check_beam_args(beam_size, n_best, length_penalty)
        return self._engine.beam(src_ids, lengths, int(beam_size), int(max_length), int(min_length), int(n_best),
                                 float(length_penalty), bool(serial))

    def translate(self, texts, beam=1, max_length=50):
        """Strings in, strings out, with the model's tokenizers and vocabularies."""
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings, not a single string")
        tokenizer = get_tokenizer(self.config["src_tokenizer"])
        seqs = []
        for i, text in enumerate(texts):
            tokens = tokenizer.tokenize(text)
            if not tokens:
                raise ValueError(f"texts[{i}] is empty after tokenisation")
            if self.config["reverse_source"]:
                tokens = tokens[::-1]
            seqs.append(self.src_vocab.encode(tokens))
        src, lengths = pad_batch(seqs)
        if beam == 1:
            ids = self.greedy(src, lengths, max_length)
        else:
            ids, _ = self.beam(src, lengths, beam_size=beam, max_length=max_length)
        detok = get_tokenizer(self.config["tgt_tokenizer"])
        return [detok.detokenize(self.tgt_vocab.decode([int(i) for i in row])) for row in ids]
