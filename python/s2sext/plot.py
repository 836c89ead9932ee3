"""Attention heatmaps (matplotlib, an optional extra: ``pip install 's2sext[plot]'``)."""

from __future__ import annotations

import os

import numpy as np

from . import serialize
from .spec import EOS


class PlotUnavailableError(RuntimeError):
    """matplotlib is not installed."""


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotUnavailableError(
            "plotting needs matplotlib: pip install matplotlib (or pip install 's2sext[plot]')"
        ) from None
    return plt


def attention_for_text(model, text, max_length=50):
    """Greedy-translate one string; returns (source tokens in reading order, output tokens,
    attention float [T, S] with columns in reading order)."""
    src_ids, lengths = model.encode_texts([text])
    ids, attention = model.greedy(src_ids, lengths, max_length=max_length, return_attention=True)
    source_tokens = model.src_tokenizer.tokenize(text)
    out_tokens = [model.tgt_vocab.tokens[i] for i in ids[0]]
    if EOS in out_tokens:
        out_tokens = out_tokens[: out_tokens.index(EOS) + 1]
    weights = attention[0, : len(out_tokens), : len(source_tokens)]
    if model.config.reverse_source:  # the model read the source backwards; show it in reading order
        weights = weights[:, ::-1]
    return source_tokens, out_tokens, np.ascontiguousarray(weights)


def plot_attention(model, text, path, max_length=50, title=None):
    """Write the attention heatmap of ``model`` translating ``text`` to ``path`` (PNG, SVG, PDF
    by extension, PNG without one); returns the translation. Written atomically
    (``s2sext.serialize.atomic_write``): ``path`` holds the old file or the whole new one."""
    plt = _pyplot()
    if model.config.attention is None:
        raise ValueError("this model has no attention (attention=None): there is nothing to plot")
    source, output, weights = attention_for_text(model, text, max_length)
    fig_w = max(4.0, 0.32 * len(source) + 1.5)
    fig_h = max(3.0, 0.32 * len(output) + 1.5)
    fig, ax = plt.subplots(figsize=(fig_w, fig_h))
    image = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(source)))
    ax.set_xticklabels(["␣" if t == " " else t for t in source], fontsize=9)
    ax.set_yticks(range(len(output)))
    ax.set_yticklabels(output, fontsize=9)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    translation = model.decode_ids([model.tgt_vocab.index(t) for t in output])
    ax.set_title(title or f"{text!r} -> {translation!r}", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    ext = os.path.splitext(os.fspath(path))[1]
    try:
        # the one atomic writer (serialize): a killed save leaves no temporary file
        serialize.atomic_write(path, lambda file: fig.savefig(file, format=ext[1:].lower() or "png", dpi=120))
    finally:
        plt.close(fig)
    return translation
