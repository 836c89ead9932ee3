"""The compiled decoder: a trained :class:`s2sext.Seq2Seq` prepared once, then the encoder and the
whole greedy or beam decode run in C++ (``src/cpp/engine/engine.cpp``) with the GIL released.

One Python call per batch of inputs, no Python per step. A :class:`Decoder` is immutable: any
number of Python threads may decode with one at once (``serial=True`` keeps each call on its own
thread, so that concurrent calls scale with the cores instead of queueing for s2sext's pool).
"""

from __future__ import annotations

import numpy as np

from . import _core
from .checks import check_bool
from .decoding import (check_beam_args, check_generate_args, check_lengths, check_target_prefix,
                       check_translate_args)
from .seq2seq_file import read_seq2seq
from .spec import PAD_ID
from .text import Vocab, decode_ids, encode_texts, get_tokenizer

DTYPES = ("float32", "bfloat16", "int8")


class Decoder:
    """A compiled Seq2Seq for inference.

    Build one with ``model.compile(dtype)`` or ``Decoder.load(path, dtype)``. ``dtype="bfloat16"``
    stores the LSTM (encoder and decoder), combine and output matrices as bfloat16 and computes in
    float32: half the bytes per step. ``dtype="int8"`` takes every matrix of the model (embeddings,
    LSTMs, attention, bridge, combine, output) at its int8 values (symmetric per-row scales, the
    rule of ``_core.quantize_int8``) and runs the LSTM, combine and output products in int32 on
    int8 activations (each row quantized at run time by the same rule): a quarter of the bytes per
    step. The attention and bridge matrices and the embedding rows are used as float32 copies of
    their int8 values.
    """

    def __init__(self, config: dict, params: dict, src_vocab: Vocab, tgt_vocab: Vocab, dtype: str = "float32",
                 tokenizers: tuple | None = None):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be 'float32', 'bfloat16' or 'int8', got {dtype!r}")
        self.config = dict(config)
        self.src_vocab = src_vocab
        self.tgt_vocab = tgt_vocab
        # (source's, target's) tokenizers; None: those the configuration names, lowercasing as it
        # says (a version-1 configuration has no such keys: no lowercasing; a sentencepiece side
        # needs its tokenizer given)
        self.tokenizers = tokenizers if tokenizers is not None else tuple(
            get_tokenizer(self.config[f"{side}_tokenizer"], lowercase=self.config.get(f"{side}_lowercase", False))
            for side in ("src", "tgt"))
        self.dtype = dtype
        # the engine checks every parameter's presence and shape, then refuses weights that could
        # overflow float32 (ValueError), by the rule the model layer's decoders apply
        # (s2sext.decoding.check_float32_range)
        self._engine = _core.Engine(self.config, {k: np.asarray(v, np.float32) for k, v in params.items()}, dtype)

    @classmethod
    def from_model(cls, model, dtype: str = "float32") -> "Decoder":
        return cls(model.config.as_dict(), model.params, model.src_vocab, model.tgt_vocab, dtype,
                   (model.src_tokenizer, model.tgt_tokenizer))

    @classmethod
    def load(cls, path, dtype: str = "float32") -> "Decoder":
        """Compile a model file written by ``Seq2Seq.save`` (ModelFileError if it is not one)."""
        config, src_vocab, tgt_vocab, params, tokenizers = read_seq2seq(path)
        return cls(config.as_dict(), params, src_vocab, tgt_vocab, dtype, tokenizers)

    def greedy(self, src_ids, lengths=None, max_length=50, min_length=0, serial=False, return_attention=False):
        """Greedy decoding: int [B, S] -> int [B, T] (each row up to and including ``<eos>``, then
        ``<pad>``; ``T <= max_length``; ``<eos>`` is not chosen before step ``min_length``). With
        ``return_attention``, also the attention weights behind each chosen token, float32
        [B, T, S] (zeros without attention and after ``<eos>``)."""
        max_length, min_length = check_lengths(max_length, min_length)
        return self._engine.greedy(src_ids, lengths, max_length, min_length, bool(serial),
                                   check_bool(return_attention, "return_attention"))

    def beam(self, src_ids, lengths=None, beam_size=5, max_length=50, min_length=0, n_best=1,
             length_penalty=0.0, serial=False):
        """Beam search with the rules of :meth:`hypotheses`.

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
                   length_penalty=0.0, serial=False, return_attention=False):
        """Beam search as lists: per input up to ``n_best`` tuples ``(tokens int [n], score,
        log_prob)``, best first; with ``return_attention`` each tuple ends with the attention
        weights behind each token, float32 [n, S].

        At each step every live hypothesis is extended by every token; the ``beam_size`` best
        extensions of each input (by total log-probability) are kept. An extension ending in
        ``<eos>`` is finished and leaves the beam. An input stops when it has ``n_best`` finished
        hypotheses and no live one can still beat them (a bound that holds for
        ``length_penalty >= 0``), when no hypothesis is live, or at ``max_length``, where live
        hypotheses are finished without ``<eos>``. ``score`` is ``log_prob /
        decoding.length_penalty_factor(len(tokens), length_penalty)``."""
        max_length, min_length = check_lengths(max_length, min_length)
        beam_size, n_best, length_penalty = check_beam_args(beam_size, n_best, length_penalty)
        return self._engine.beam(src_ids, lengths, beam_size, max_length, min_length, n_best, length_penalty,
                                 bool(serial), check_bool(return_attention, "return_attention"))

    def generate(self, src_ids, lengths=None, beam_size=1, max_length=50, min_length=0, n_best=1,
                 length_penalty=0.0, coverage_penalty=0.0, no_repeat_ngram_size=0, target_prefix=None,
                 sampling_temperature=1.0, sampling_topk=1, sampling_topp=1.0, seed=0, return_attention=False,
                 return_token_scores=False):
        """Every option of the one search: per input a list of up to ``n_best`` dicts, best first,
        with ``tokens`` (int [n], ending in ``<eos>`` when finished), ``score``, ``log_prob`` and,
        when asked, ``token_scores`` (float64 [n], summing to ``log_prob``) and ``attention``
        (float32 [n, S]).

        ``beam_size == 1`` decodes greedily, or samples: ``sampling_topk`` 1 takes the argmax,
        otherwise each token is drawn from ``softmax(logits / sampling_temperature)`` restricted to
        the ``sampling_topk`` most likely tokens (0: all), then to the smallest most-likely-first set
        of probability >= ``sampling_topp``; reproducible for a ``seed`` (the RNG, std::mt19937_64
        seeded with ``seed`` + the input's index, is documented in src/cpp/engine/search.h).
        Sampling with ``beam_size > 1`` is refused. ``beam_size > 1`` runs the beam search of
        :meth:`hypotheses`.

        ``target_prefix``: per input a list of token ids (or None) that the search feeds and scores
        first, then continues freely (all beams share it); at most ``max_length`` ids, no
        ``<pad>``/``<sos>``/``<eos>``. ``no_repeat_ngram_size`` N > 0: no N-gram occurs twice in a
        hypothesis (the prefix counts). ``score`` is ``log_prob / length_penalty_factor(n,
        length_penalty)`` plus GNMT's coverage penalty ``coverage_penalty * sum_s log(min(sum_t
        a_ts, 1))`` over the input's source positions (needs a model with attention); the coverage
        penalty ranks finished hypotheses, it does not steer the search. ``token_scores`` are the
        model's log-probabilities (temperature 1, before blocking and sampling restrictions)."""
        max_length, min_length = check_lengths(max_length, min_length)
        (beam_size, n_best, length_penalty, coverage_penalty, no_repeat_ngram_size, sampling_temperature,
         sampling_topk, sampling_topp, seed, return_attention, return_token_scores) = check_generate_args(
            beam_size, n_best, length_penalty, coverage_penalty, no_repeat_ngram_size, sampling_temperature,
            sampling_topk, sampling_topp, seed, return_attention, return_token_scores)
        if target_prefix is not None:
            shape = np.shape(src_ids)
            if len(shape) != 2:
                raise ValueError(f"src_ids must have shape [B, S], got shape {shape}")
            target_prefix = check_target_prefix(target_prefix, shape[0], len(self.tgt_vocab), max_length)
        results = self._engine.generate(src_ids, lengths, beam_size, max_length, min_length, n_best, length_penalty,
                                        coverage_penalty, no_repeat_ngram_size, target_prefix, sampling_temperature,
                                        sampling_topk, sampling_topp, seed, False, return_attention,
                                        return_token_scores)
        out = []
        for hyps in results:
            items = []
            for tokens, score, log_prob, token_scores, attention in hyps:
                item = {"tokens": tokens, "score": score, "log_prob": log_prob}
                if return_token_scores:
                    item["token_scores"] = token_scores
                if return_attention:
                    item["attention"] = attention
                items.append(item)
            out.append(items)
        return out

    def translate(self, texts, beam=1, n_best=1, max_length=50, min_length=0, length_penalty=0.0, *,
                  coverage_penalty=0.0, no_repeat_ngram_size=0, target_prefix=None, sampling_temperature=1.0,
                  sampling_topk=1, sampling_topp=1.0, seed=0):
        """Strings in, strings out, as :meth:`s2sext.Seq2Seq.translate`: a list of strings, or with
        ``n_best > 1`` a list of lists of ``(text, score)``. The keyword options are
        :meth:`generate`'s; ``target_prefix`` here is one text (read with the target's tokenizer)
        that every output starts with, and the outputs include it."""
        beam, n_best = check_translate_args(beam, n_best)
        src_tokenizer, tgt_tokenizer = self.tokenizers
        src, lengths = encode_texts(texts, self.src_vocab, src_tokenizer, self.config["reverse_source"])
        extra = dict(coverage_penalty=coverage_penalty, no_repeat_ngram_size=no_repeat_ngram_size,
                     sampling_temperature=sampling_temperature, sampling_topk=sampling_topk,
                     sampling_topp=sampling_topp, seed=seed)
        plain = extra == dict(coverage_penalty=0.0, no_repeat_ngram_size=0, sampling_temperature=1.0,
                              sampling_topk=1, sampling_topp=1.0, seed=0)
        if target_prefix is not None:
            if not isinstance(target_prefix, str):
                raise TypeError(f"target_prefix must be a str or None, got {type(target_prefix).__name__}")
            prefix = self.tgt_vocab.encode(get_tokenizer(tgt_tokenizer).tokenize(target_prefix))
            if prefix:  # a prefix without tokens is none
                extra["target_prefix"] = [list(prefix)] * len(lengths)
                plain = False
        if not plain:  # generate's options: the one search through generate
            results = self.generate(src, lengths, beam, max_length, min_length, n_best, length_penalty, **extra)
            texts = [[(decode_ids(h["tokens"], self.tgt_vocab, tgt_tokenizer), h["score"]) for h in hyps]
                     for hyps in results]
            return [hyps[0][0] if hyps else "" for hyps in texts] if n_best == 1 else texts
        if beam == 1 and n_best == 1:
            ids = self.greedy(src, lengths, max_length, min_length)
            return [decode_ids(row, self.tgt_vocab, tgt_tokenizer) for row in ids]
        results = self.hypotheses(src, lengths, beam, max_length, min_length, n_best, length_penalty)
        if n_best == 1:
            return [decode_ids(hyps[0][0], self.tgt_vocab, tgt_tokenizer) if hyps else "" for hyps in results]
        return [[(decode_ids(t, self.tgt_vocab, tgt_tokenizer), score) for t, score, _ in hyps] for hyps in results]
