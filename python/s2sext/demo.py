"""A short demo of the kernels: encode a batch of padded sequences with the LSTM, attend from a
few decoder queries, take the contexts, run every backward, and check one gradient against a
finite difference in float64. Needs numpy only."""

from __future__ import annotations

import time

import numpy as np

from . import ops
from ._core import cpu_info


def _loss_and_grads(x, q, weights, lengths):
    """L = sum(c * g) for a fixed g, through LSTM -> dot attention -> weight sum."""
    w_ih, w_hh, b = weights
    hs, _, _, lstm_cache = ops.lstm_forward(x, None, None, w_ih, w_hh, b, lengths)
    a, att_cache = ops.attention_weight_forward(hs, q, "dot", (), lengths)
    c = ops.weight_sum_forward(hs, a)
    g = np.cos(np.arange(c.size, dtype=c.dtype)).reshape(c.shape)  # a fixed upstream gradient
    loss = float((c * g).sum())
    dhs_sum, da = ops.weight_sum_backward(g, hs, a)
    dhs_att, _, _ = ops.attention_weight_backward(da, att_cache)
    grads = ops.lstm_backward(dhs_sum + dhs_att, None, None, lstm_cache)
    return loss, a, grads


def main() -> int:
    info = cpu_info()
    print(f"s2sext kernels on {info['arch']}: SIMD path {info['kernel_path']} "
          f"(available: {', '.join(info['available_paths'])}); BLAS {info['blas']['name']} "
          f"core {info['blas']['core'] or '?'}, {info['blas']['threads']} threads")

    rng = np.random.default_rng(0)
    B, S, T, I, H = 4, 9, 3, 8, 16
    lengths = np.array([9, 5, 7, 2])
    x = rng.standard_normal((B, S, I))
    q = rng.standard_normal((B, T, H))
    weights = (rng.standard_normal((4 * H, I)) * 0.3, rng.standard_normal((4 * H, H)) * 0.3,
               rng.standard_normal(4 * H) * 0.1)

    loss, a, grads = _loss_and_grads(x, q, weights, lengths)
    print(f"\nLSTM [B={B}, S={S}, I={I}, H={H}] -> dot attention from T={T} queries; lengths {lengths.tolist()}")
    print("attention weights of sequence 1 (length 5), step 0:")
    print("  " + " ".join(f"{v:.3f}" for v in a[1, 0]))

    # finite-difference check of dL/dw_hh[0, 0] in float64
    eps = 1e-6
    bumped = (weights[0], weights[1].copy(), weights[2])
    bumped[1][0, 0] += eps
    numeric = (_loss_and_grads(x, q, bumped, lengths)[0] - loss) / eps
    analytic = grads[4][0, 0]
    print(f"\ndL/dw_hh[0,0]: backward {analytic:.6f}, finite difference {numeric:.6f}")

    x32, q32 = x.astype(np.float32), q.astype(np.float32)
    w32 = tuple(w.astype(np.float32) for w in weights)
    runs = 200
    start = time.perf_counter()
    for _ in range(runs):
        _loss_and_grads(x32, q32, w32, lengths)
    per_call = (time.perf_counter() - start) / runs
    print(f"float32 forward + backward of the whole chain: {per_call * 1e6:.0f} us per call")
    ok = abs(analytic - numeric) <= 1e-4 * max(1.0, abs(numeric))
    print("gradient check:", "ok" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
