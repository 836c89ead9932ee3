"""Train an attention seq2seq in plain PyTorch, import it into s2sext, translate with the compiled
decoder, and check that both give the same greedy outputs.

    python examples/torch_import.py                       # Luong dot attention, 2 layers, bidirectional
    python examples/torch_import.py --variant concat      # Bahdanau (concat) attention
    python examples/torch_import.py --pairs 2000 --steps 100 --check 200    # a quick run

The PyTorch model is s2sext.torch_reference.TorchSeq2Seq: nn.Embedding, an nn.LSTM encoder, one
nn.LSTMCell per decoder layer, nn.Linear layers, trained here with torch.optim.Adam and autograd
(no s2sext kernel involved). Any PyTorch model laid out like it imports with a name mapping; see
s2sext.torch.seq2seq_from_state_dict.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import s2sext.torch as st
from s2sext.data import build_vocabs, encode_pairs, make_dates, pad_batch, split_pairs
from s2sext.torch_reference import DECODER_CELLS, IGNORE_PREFIXES, STATE_DICT_NAMES, TorchSeq2Seq
from s2sext.train import target_arrays


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", choices=["dot", "concat"], default="dot",
                    help="dot: Luong dot attention; concat: Bahdanau style with concat attention")
    ap.add_argument("--pairs", type=int, default=20000, help="generated date pairs")
    ap.add_argument("--steps", type=int, default=600, help="PyTorch training steps (batch 64)")
    ap.add_argument("--check", type=int, default=1000, help="held-out inputs compared")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)

    pairs = make_dates(args.pairs, seed=args.seed)
    train_pairs, held_out = split_pairs(pairs, args.check, seed=args.seed)
    src_vocab, tgt_vocab = build_vocabs(train_pairs, "char", "char")
    src, tgt = encode_pairs(train_pairs, src_vocab, tgt_vocab, "char", "char", reverse_source=True)
    style = "luong" if args.variant == "dot" else "bahdanau"
    config = dict(embed_size=16, hidden_size=64, num_layers=2, bidirectional=True, attention=args.variant,
                  attention_style=style, input_feeding=False, max_source_length=64)
    torch_model = TorchSeq2Seq({"src_vocab_size": len(src_vocab), "tgt_vocab_size": len(tgt_vocab), **config},
                               dtype=torch.float32)

    # 1. train in PyTorch (teacher forcing, Adam, clipping)
    opt = torch.optim.Adam([p for p in torch_model.parameters() if p.requires_grad], lr=3e-3)
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    for step in range(args.steps):
        idx = rng.integers(0, len(src), 64)
        s_ids, s_len = pad_batch([src[i] for i in idx])
        t_ids, t_len = pad_batch([tgt[i] for i in idx])
        tgt_in, tgt_out, lengths = target_arrays(t_ids, t_len)
        opt.zero_grad()
        loss = torch_model.loss(s_ids, s_len, tgt_in, tgt_out, lengths)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(torch_model.parameters(), 5.0)
        opt.step()
        if step % 100 == 0 or step == args.steps - 1:
            print(f"PyTorch step {step}: loss {loss.item():.4f}", flush=True)
    print(f"trained in PyTorch: {args.steps} steps, {time.perf_counter() - start:.0f} s")

    # 2. import into s2sext and compile
    model = st.seq2seq_from_state_dict(torch_model.state_dict(), src_vocab, tgt_vocab, names=STATE_DICT_NAMES,
                                       decoder_cells=DECODER_CELLS, ignore_prefixes=IGNORE_PREFIXES,
                                       reverse_source=True, **config)
    decoder = model.compile()

    # 3. the same greedy outputs on held-out inputs
    h_src, _ = encode_pairs(held_out, src_vocab, tgt_vocab, "char", "char", reverse_source=True)
    ids, lengths = pad_batch(h_src)
    max_length = 12
    with torch.no_grad():
        theirs = torch_model.greedy(ids, lengths, max_length)
    ours = decoder.greedy(ids, lengths, max_length=max_length)
    same = 0
    for a, b in zip(ours, theirs):
        n = int(np.count_nonzero(a))  # ours stops at <eos> and pads with 0 after it
        same += bool(np.array_equal(a[:n], b[:n]))
    correct = sum(model.decode_ids(row) == t for row, (_, t) in zip(ours, held_out))
    print(f"same greedy output as PyTorch on {same} of {len(held_out)} held-out inputs; "
          f"exact match {100 * correct / len(held_out):.1f}%")
    for text, out in zip([s for s, _ in held_out[:5]], decoder.translate([s for s, _ in held_out[:5]])):
        print(f"  {text:<30} -> {out}")
    return 0 if same == len(held_out) else 1


if __name__ == "__main__":
    raise SystemExit(main())
