"""The Seq2Seq model: an LSTM encoder, an LSTM decoder with optional attention (:mod:`s2sext.layers`),
the loss, decoding, translation and one-file save/load (numpy only, no torch).

The equations, parameter names and shapes are specified in ``docs/model.md`` (its parameter table
is :mod:`s2sext.spec`'s); the configuration is :class:`s2sext.Config` (:mod:`s2sext.config`).
Letters: ``B`` batch, ``S`` source length, ``T`` decoder steps.

The parts and helpers that lived here are importable from here still: :class:`Config`,
:class:`Encoder`, :class:`Attention`, :class:`RecurrentDecoder`, :class:`EncoderState`,
:func:`masked_cross_entropy`, :func:`parameter_shapes`, :func:`encode_texts`, :func:`decode_ids`.
"""

from __future__ import annotations

import math

import numpy as np

from .checks import check_bool, check_int, check_real
from .config import VERSION2_DEFAULTS, Config
from .engine import Decoder
from .layers import Attention, Encoder, EncoderState, RecurrentDecoder, masked_cross_entropy
from .seq2seq_file import (FILE_KIND, file_header, parameter_tensors, read_seq2seq, seq2seq_from_header,
                           tokenizer_tensors)
from .serialize import write_model_file
from .spec import (ATTENTION_STYLES, BRIDGES, COMBINE_ACTIVATIONS, DTYPE, aligned_array, iter_parameter_shapes,
                   parameter_table, unfreeze_parameters)
from .text import SentencePieceTokenizer, Vocab, decode_ids, encode_texts, get_tokenizer

__all__ = ["Seq2Seq", "Config", "Encoder", "Attention", "RecurrentDecoder", "EncoderState", "masked_cross_entropy",
           "parameter_shapes", "iter_parameter_shapes", "init_parameters", "encode_texts", "decode_ids",
           "aligned_array", "DTYPE", "ATTENTION_STYLES", "BRIDGES", "COMBINE_ACTIVATIONS", "VERSION2_DEFAULTS"]


def parameter_shapes(config: Config) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every parameter, in a fixed order (``docs/model.md``)."""
    return dict(parameter_table(config))


def init_parameters(config: Config, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """PyTorch's default initialisation: embeddings N(0, 1), everything else U(-1/sqrt(fan_in), +)."""
    params = {}
    for name, shape in parameter_shapes(config).items():
        if name.endswith("_embed"):
            value = rng.standard_normal(shape)
        else:
            if name.startswith("encoder."):
                fan_in = config.encoder_hidden_size
            elif name.startswith("decoder.") or name == "attention.v":
                fan_in = config.hidden_size
            elif name.endswith(".bias"):
                fan_in = 2 * config.hidden_size if not name.startswith("out.") else config.hidden_size
            else:
                fan_in = shape[-1]
            bound = 1.0 / math.sqrt(fan_in)
            value = rng.uniform(-bound, bound, shape)
            if name.endswith(".b"):  # one LSTM bias stands for PyTorch's two
                value = value + rng.uniform(-bound, bound, shape)
        params[name] = aligned_array(value)
    return params


def _as_ids(name, value, ndim):
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array; got dtype {arr.dtype}")
    if arr.ndim != ndim:
        expected = "[B, S]" if ndim == 2 else "[B]"
        raise ValueError(f"{name} must have shape {expected}; got shape {arr.shape}")
    return arr.astype(np.int64, copy=False)


class Seq2Seq:
    """An attention seq2seq model trained and run with the C++ kernels (no torch).

    Parameters
    ----------
    src_vocab, tgt_vocab : Vocab, list of str, or int
        Vocabularies (a list of tokens gets the four specials prepended; an int makes a vocabulary
        of that size with placeholder tokens).
    embed_size, hidden_size, num_layers : int
    bidirectional : bool
        Encoder directions concatenated and bridged to ``hidden_size`` by learned layers.
    dropout : float
        Between stacked LSTM layers (encoder and decoder), in training only.
    attention : None or str
        ``None`` (the encoder's last state is the only context) or one of ``ops.ATTENTION_KINDS``.
    attention_style : "luong" or "bahdanau"
    input_feeding : bool
        Luong only: feed the previous attentional state into the next step.
    seed : int
        Seeds the initial weights.
    max_source_length : int
        The longest source ``location`` attention accepts (its weight has this many rows).
    src_tokenizer, tgt_tokenizer : "char", "word" or a tokenizer
        Used by :meth:`translate`; the configuration holds their names. A sentencepiece side is
        given as its :class:`s2sext.text.SentencePieceTokenizer` (saved with the model), and its
        vocabulary must be that tokenizer's (``tokenizer.vocab()``).
    reverse_source : bool
        :meth:`translate` reverses the source tokens (train with the same setting).
    bridge : "linear" or "concat"
        Bidirectional only. ``"linear"``: each direction has ``hidden_size`` units and learned
        layers map their concatenation to the decoder's state and memory. ``"concat"``: each
        direction has ``hidden_size / 2`` units (even ``hidden_size``), the decoder's initial
        state is ``[h_fwd; h_bwd]`` and the memory the concatenated outputs (OpenNMT-py's ``brnn``).
    combine_activation : "tanh" or "none"
        The activation of the combine layer ``act(W_c [c; h] + b_c)``; OpenNMT-py's ``mlp``
        attention has none.
    attention_query_bias : bool
        concat only: the score is ``v . tanh(W_q q + b_q + W_k k)`` with a learned ``attention.b_q``.
    src_lowercase, tgt_lowercase : bool
        The side's text is lowercased before it is tokenized (s2sext's one rule, ``_core.lowercase``):
        :meth:`translate` lowercases its inputs, and a lowercasing target side produces lowercase
        text. A side whose tokenizer is given as a lowercasing tokenizer lowercases too (the
        configuration holds ``src_tokenizer.lowercase``). Saved in the file (header version 3).
    """

    def __init__(self, src_vocab, tgt_vocab, embed_size=16, hidden_size=256, num_layers=1,
                 bidirectional=False, dropout=0.0, attention="dot", attention_style="luong",
                 input_feeding=False, seed=0, max_source_length=128, src_tokenizer="char",
                 tgt_tokenizer="char", reverse_source=False, bridge="linear", combine_activation="tanh",
                 attention_query_bias=False, src_lowercase=False, tgt_lowercase=False, *, _params=None):
        self.src_vocab = Vocab.coerce(src_vocab)
        self.tgt_vocab = Vocab.coerce(tgt_vocab)
        if attention == "none":
            attention = None
        check_real(dropout, "dropout", 0, 1, open_maximum=True)  # before float(), which overflows for a huge int
        check_int(seed, "seed")
        self.src_tokenizer = get_tokenizer(src_tokenizer, lowercase=check_bool(src_lowercase, "src_lowercase"))
        self.tgt_tokenizer = get_tokenizer(tgt_tokenizer, lowercase=check_bool(tgt_lowercase, "tgt_lowercase"))
        for side, tokenizer, vocab in (("src", self.src_tokenizer, self.src_vocab),
                                       ("tgt", self.tgt_tokenizer, self.tgt_vocab)):
            if isinstance(tokenizer, SentencePieceTokenizer) and tokenizer.vocab() != vocab:
                raise ValueError(f"{side}_vocab must be the vocabulary of the sentencepiece {side}_tokenizer "
                                 f"({side}_tokenizer.vocab(), {len(tokenizer.vocab())} tokens); got {vocab!r}")
        self.config = Config(
            src_vocab_size=len(self.src_vocab), tgt_vocab_size=len(self.tgt_vocab), embed_size=embed_size,
            hidden_size=hidden_size, num_layers=num_layers, bidirectional=bidirectional,
            dropout=float(dropout), attention=attention, attention_style=attention_style,
            input_feeding=input_feeding, max_source_length=max_source_length,
            src_tokenizer=self.src_tokenizer.name, tgt_tokenizer=self.tgt_tokenizer.name,
            reverse_source=reverse_source, bridge=bridge, combine_activation=combine_activation, attention_query_bias=attention_query_bias,
            src_lowercase=self.src_tokenizer.lowercase, tgt_lowercase=self.tgt_tokenizer.lowercase,
        )
        self.config.validate()
        self.params = _params if _params is not None else init_parameters(self.config, np.random.default_rng(seed))
        self._search_decoder = None  # (key, Decoder): see search_decoder
        self.encoder = Encoder(self.config)
        self.decoder = RecurrentDecoder(self.config)

    # -- sizes and checks ------------------------------------------------------------------------

    @property
    def num_parameters(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    def _check_source(self, src, lengths):
        src = _as_ids("src_ids", src, 2)
        B, S = src.shape
        if B < 1 or S < 1:
            raise ValueError(f"src_ids must have shape [B, S] with B, S >= 1; got {src.shape}")
        if lengths is None:
            lengths = np.full(B, S, np.int64)
        else:
            lengths = _as_ids("lengths", lengths, 1)
            if lengths.shape != (B,):
                raise ValueError(f"lengths must have shape [B] = ({B},); got {lengths.shape}")
            if lengths.min() < 1 or lengths.max() > S:
                raise ValueError(f"lengths must lie in [1, S={S}]; got min {lengths.min()}, max {lengths.max()}")
        if src.min() < 0 or src.max() >= self.config.src_vocab_size:
            raise ValueError(
                f"src_ids must lie in [0, {self.config.src_vocab_size}) (the source vocabulary); "
                f"got min {src.min()}, max {src.max()}"
            )
        if self.config.attention == "location" and S > self.config.max_source_length:
            raise ValueError(
                f"src_ids has {S} steps; location attention accepts at most max_source_length="
                f"{self.config.max_source_length}"
            )
        return src, lengths

    # -- training --------------------------------------------------------------------------------

    def zero_grads(self) -> dict[str, np.ndarray]:
        return {name: np.zeros_like(p) for name, p in self.params.items()}

    def loss_and_grads(self, src, src_lengths, tgt_in, tgt_out, tgt_lengths, feed_prob=1.0, rng=None,
                       train=True, need_grads=True, force_step_path=False, label_smoothing=0.0,
                       embed_dropout=0.0):
        """Loss and gradients on one batch.

        Parameters
        ----------
        src : int [B, S]; src_lengths : int [B]
        tgt_in : int [B, T]
            Decoder inputs, ``<sos> y_1 .. y_{T-1}`` (padded).
        tgt_out : int [B, T]
            Targets, ``y_1 .. y_n <eos>`` (padded).
        tgt_lengths : int [B]
            Valid steps per row (``n + 1``).
        feed_prob : float
            Teacher forcing probability: at each step after the first and for each row, the input
            is ``tgt_in`` with this probability, else the model's previous argmax prediction
            (scheduled sampling; no gradient flows through the choice).
        rng : numpy Generator or None
            Draws the sampling decisions and the dropout masks (dropout only when ``train``).
        label_smoothing : float in [0, 1]
            ``eps`` of :func:`masked_cross_entropy` (PyTorch's definition); the loss returned is the
            smoothed one. 0 (the default) is the plain negative log-likelihood.
        embed_dropout : float in [0, 1)
            Inverted dropout on the embedded source and target inputs, elementwise (each of the
            ``E`` components dropped on its own, as OpenNMT-py's dropout on embeddings), only when
            ``train`` and ``rng`` is given; the backward applies the same masks.

        Returns
        -------
        loss : float; grads : dict name -> array (None when not ``need_grads``);
        stats : dict with ``tokens``, ``correct``, ``fed_truth`` (fraction of inputs after the first
        step that were ground truth) and ``decoder_inputs`` (int [B, T], the tokens fed).
        """
        src, src_lengths = self._check_source(src, src_lengths)
        tgt_in = _as_ids("tgt_in", tgt_in, 2)
        tgt_out = _as_ids("tgt_out", tgt_out, 2)
        tgt_lengths = _as_ids("tgt_lengths", tgt_lengths, 1)
        B, T = tgt_in.shape
        if tgt_out.shape != (B, T) or tgt_lengths.shape != (B,) or src.shape[0] != B:
            raise ValueError(
                f"batch shapes disagree: src {src.shape}, tgt_in {tgt_in.shape}, tgt_out {tgt_out.shape}, "
                f"tgt_lengths {tgt_lengths.shape}"
            )
        if tgt_lengths.min() < 1 or tgt_lengths.max() > T:
            raise ValueError(f"tgt_lengths must lie in [1, T={T}]")
        for name, ids in (("tgt_in", tgt_in), ("tgt_out", tgt_out)):
            if ids.min() < 0 or ids.max() >= self.config.tgt_vocab_size:
                raise ValueError(f"{name} must lie in [0, {self.config.tgt_vocab_size}) (the target vocabulary)")
        check_real(label_smoothing, "label_smoothing", 0, 1)
        check_real(embed_dropout, "embed_dropout", 0, 1, open_maximum=True)
        drop_rng = rng if (train and self.config.dropout > 0) else None
        embed = {"embed_dropout": float(embed_dropout), "embed_rng": rng if (train and embed_dropout > 0) else None}
        params = self.params
        # Rows sorted by source length, longest first: the LSTM kernels then skip finished rows at
        # each step (as packed sequences do). The loss is a mean over tokens, so order is free.
        order = np.argsort(-src_lengths, kind="stable")
        if np.any(order != np.arange(B)):
            src, src_lengths = src[order], src_lengths[order]
            tgt_in, tgt_out, tgt_lengths = tgt_in[order], tgt_out[order], tgt_lengths[order]
        enc = self.encoder.forward(params, src, src_lengths, drop_rng, **embed)
        grads = self.zero_grads() if need_grads else None
        fed_truth = 1.0
        decoder_inputs = tgt_in
        if feed_prob >= 1.0 and self.decoder.can_run_all_steps() and not force_step_path:
            logits, _, cache = self.decoder.forward_all_steps(params, enc, tgt_in, tgt_lengths, drop_rng, **embed)
            loss, d_logits, count, correct = masked_cross_entropy(logits, tgt_out, tgt_lengths, label_smoothing)
            if need_grads:
                d_memory, d_h0, d_c0 = self.decoder.backward_all_steps(params, enc, d_logits, cache, grads)
                self.encoder.backward(params, enc, d_memory, d_h0, d_c0, grads)
        else:
            if feed_prob < 1.0 and rng is None:
                raise ValueError("scheduled sampling (feed_prob < 1) needs an rng")
            state = self.decoder.initial_step_state(enc)
            step_logits, step_caches = [], []
            tokens = tgt_in[:, 0]
            decoder_inputs = tgt_in.copy()
            fed = 0
            for t in range(T):
                if t > 0 and feed_prob < 1.0:
                    truth = rng.random(B) < feed_prob
                    fed += int(truth.sum())
                    tokens = np.where(truth, tgt_in[:, t], step_logits[-1].argmax(axis=-1))
                    decoder_inputs[:, t] = tokens
                elif t > 0:
                    tokens = tgt_in[:, t]
                    fed += B
                logits_t, _, state, cache = self.decoder.step_forward(params, enc, tokens, state, drop_rng, **embed)
                step_logits.append(logits_t)
                step_caches.append(cache)
            if T > 1:
                fed_truth = fed / (B * (T - 1))
            logits = np.stack(step_logits, axis=1)
            loss, d_logits, count, correct = masked_cross_entropy(logits, tgt_out, tgt_lengths, label_smoothing)
            if need_grads:
                L = self.config.num_layers
                d_state = ([None] * L, [None] * L, None)
                d_memory = None
                for t in reversed(range(T)):
                    d_mem_t, d_state = self.decoder.step_backward(params, d_logits[:, t], d_state, step_caches[t], grads)
                    if d_mem_t is not None:
                        d_memory = d_mem_t if d_memory is None else d_memory + d_mem_t
                self.encoder.backward(params, enc, d_memory, d_state[0], d_state[1], grads)
        restored = np.empty_like(decoder_inputs)
        restored[order] = decoder_inputs
        stats = {"tokens": count, "correct": correct, "fed_truth": fed_truth, "decoder_inputs": restored}
        return loss, grads, stats

    # -- inference -------------------------------------------------------------------------------

    def encode(self, src_ids, lengths=None) -> EncoderState:
        """Run the encoder for inference (no dropout, caches kept only as the kernels return them)."""
        src, lengths = self._check_source(src_ids, lengths)
        return self.encoder.forward(self.params, src, lengths)

    def greedy(self, src_ids, lengths=None, max_length=50, min_length=0, return_attention=False):
        """Greedy decoding until ``<eos>``: int [B, S] -> int [B, T].

        Each row holds the chosen tokens up to and including ``<eos>`` and ``<pad>`` after it;
        ``T <= max_length`` is the longest row. ``<eos>`` is not chosen before step ``min_length``.
        With ``return_attention``, also returns the attention weights of the chosen output,
        float32 [B, T, S] (zeros without attention). Runs the one C++ search through the compiled
        decoder (:meth:`search_decoder`); a model whose weights could overflow float32 is refused
        (ValueError).
        """
        return self.search_decoder().greedy(src_ids, lengths, max_length, min_length, return_attention=return_attention)

    def beam_search(self, src_ids, lengths=None, beam_size=5, max_length=50, min_length=0, n_best=1,
                    length_penalty=0.0):
        """Beam search (the rules of :meth:`s2sext.Decoder.hypotheses`, the same C++ search).

        Returns
        -------
        list (one per input) of up to ``n_best`` dicts, best first: ``tokens`` (list of int, ending in
        ``<eos>`` when finished), ``score`` (``log_prob / length_penalty_factor(len(tokens), alpha)``),
        ``log_prob`` (float) and ``attention`` (float32 [len(tokens), S], zeros without attention).
        """
        found = self.search_decoder().hypotheses(src_ids, lengths, beam_size, max_length, min_length, n_best,
                                                 length_penalty, return_attention=True)
        return [[{"tokens": tokens.tolist(), "score": score, "log_prob": log_prob, "attention": attention}
                 for tokens, score, log_prob, attention in hyps] for hyps in found]

    def encode_texts(self, texts):
        """Strings -> (src_ids int [B, S], lengths int [B]) with this model's tokenizer and vocab."""
        return encode_texts(texts, self.src_vocab, self.src_tokenizer, self.config.reverse_source)

    def decode_ids(self, ids) -> str:
        """Target ids -> text: stops at ``<eos>``, joined by the model's tokenizer."""
        return decode_ids(ids, self.tgt_vocab, self.tgt_tokenizer)

    def translate(self, texts, beam=1, n_best=1, max_length=50, min_length=0, length_penalty=0.0, **options):
        """Strings in, strings out (:meth:`s2sext.Decoder.translate`): a list of ``len(texts)``
        strings, or with ``n_best > 1`` a list of lists of ``(text, score)``. The texts are read
        with the model's source tokenizer (lowercased first when ``config.src_lowercase``).
        ``options``: the keyword options of :meth:`s2sext.Decoder.translate` (sampling, ...)."""
        return self.search_decoder().translate(texts, beam, n_best, max_length, min_length, length_penalty, **options)

    def compile(self, dtype="float32"):
        """A new compiled decoder (:class:`s2sext.Decoder`): a snapshot of the weights prepared once,
        encoder and decoding in C++ (``dtype="bfloat16"`` stores the LSTM, combine and output
        matrices in bfloat16; ``dtype="int8"`` quantizes every matrix by the int8 rule and runs the
        LSTM, combine and output products in int32: see :class:`s2sext.Decoder`)."""
        return Decoder.from_model(self, dtype)

    def search_decoder(self) -> Decoder:
        """The float32 compiled decoder that :meth:`greedy`, :meth:`beam_search` and :meth:`translate`
        run on, built on first use and kept while the parameters are unchanged.

        While it is kept the parameter arrays are read-only, so that no write can leave it stale:
        s2sext's optimisers and loaders make them writeable again (:meth:`unfreeze`) before they
        write, and the next decode sees that and builds a new one. Code that writes into
        ``model.params`` itself calls ``model.unfreeze()`` first (numpy raises "assignment
        destination is read-only" otherwise); replacing an array in the dict is seen too.
        """
        key = tuple((name, id(value)) for name, value in self.params.items())
        cached = self._search_decoder
        if cached is None or cached[0] != key or any(value.flags.writeable for value in self.params.values()):
            self._search_decoder = None
            decoder = Decoder.from_model(self)
            for value in self.params.values():
                value.flags.writeable = False
            self._search_decoder = (key, decoder)
        return self._search_decoder[1]

    def unfreeze(self) -> None:
        """Make the parameter arrays writeable again (see :meth:`search_decoder`)."""
        unfreeze_parameters(self.params)

    def __getstate__(self) -> dict:
        # a copy (copy.deepcopy, pickle) compiles its own decoder when it first decodes
        return {**self.__dict__, "_search_decoder": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        # unpickled arrays are read-only views of their bytes (they were read-only while a decoder
        # was kept) and lose the kernels' alignment: the copy gets aligned, writeable arrays
        self.params = {name: aligned_array(value) for name, value in self.params.items()}

    # -- files -----------------------------------------------------------------------------------

    FILE_KIND = FILE_KIND

    def file_header(self, extra: dict | None = None) -> dict:
        return file_header(self.config, self.src_vocab, self.tgt_vocab, extra)

    def save(self, path, extra_tensors: dict | None = None, extra: dict | None = None, dtype: str = "float32") -> None:
        """Write weights, vocabularies, configuration and any sentencepiece models to one file
        (``docs/model-format.md``); the file appears complete or not at all. ``dtype="int8"`` stores
        every matrix in int8 with a float32 scale per row (about 4x smaller; every loader reads it,
        as the float32 values the int8 values stand for)."""
        tensors = {**parameter_tensors(self.params, dtype), **tokenizer_tensors(self.src_tokenizer, self.tgt_tokenizer)}
        if extra_tensors:
            tensors.update(extra_tensors)
        write_model_file(path, self.file_header(extra), tensors)

    @classmethod
    def load(cls, path, return_extra=False):
        """Read a file written by :meth:`save`; raises ``ModelFileError`` (a ValueError) if the file
        is not a complete, consistent s2sext model."""
        if return_extra:
            config, src_vocab, tgt_vocab, params, tokenizers, extra, extra_tensors = read_seq2seq(path, return_extra=True)
            return cls._from_parts(config, src_vocab, tgt_vocab, params, tokenizers), extra, extra_tensors
        return cls._from_parts(*read_seq2seq(path))

    @classmethod
    def from_header(cls, header: dict, tensors: dict) -> "Seq2Seq":
        """The model a file's header and tensors describe (``seq2seq_file.seq2seq_from_header``'s checks)."""
        return cls._from_parts(*seq2seq_from_header(header, tensors))

    @classmethod
    def _from_parts(cls, config: Config, src_vocab: Vocab, tgt_vocab: Vocab, params: dict,
                    tokenizers: tuple) -> "Seq2Seq":
        cfg = config.as_dict()
        del cfg["src_vocab_size"], cfg["tgt_vocab_size"]
        cfg["src_tokenizer"], cfg["tgt_tokenizer"] = tokenizers
        return cls(src_vocab, tgt_vocab, _params=params, **cfg)
