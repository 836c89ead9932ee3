// LSTM forward and backward; shapes and argument order in lstm.h.
// Letters: B batch, S time steps, I input size, H hidden size, G = 4H.
#include "lstm.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "blas.h"
#include "kernels.h"
#include "parallel.h"
#include "workspace.h"

namespace s2s {
namespace {

// db [G] = sum over rows of dgates [N,G], threads taking column ranges
template <class T>
void sum_rows(T* db, const T* dgates, int64_t N, int64_t G) {
  parallel_ranges(G, N >= 4096 ? 64 : G, [&](int64_t j0, int64_t j1) {
    std::fill(db + j0, db + j1, T(0));
    for (int64_t n = 0; n < N; ++n) {
      const T* row = dgates + n * G;
      for (int64_t j = j0; j < j1; ++j) db[j] += row[j];
    }
  });
}

// Rows of the batch per thread so that each thread's share of an S-step recurrence is worth
// handing out (about 2 MFLOP of recurrent products), and never fewer than 8 (a one-row share would
// take the GEMV path instead of BLAS).
int64_t min_rows_per_thread(int64_t S, int64_t H) {
  const double flops_per_row = 2.0 * static_cast<double>(S) * 4 * H * H + 1;
  const double rows = 2e6 / flops_per_row;
  return rows < 8 ? 8 : static_cast<int64_t>(rows) + 1;
}

// Weight gradients of gates = x @ w_ih^T + h @ w_hh^T, over N rows at once:
// dw_ih [G,I] = dgates^T @ x, dw_hh [G,H] = dgates^T @ h, db [G] = column sums of dgates.
template <class T>
void gate_weight_grads(T* dw_ih, T* dw_hh, T* db, const T* dgates, const T* x, const T* h, int64_t N,
                       int64_t I, int64_t H) {
  const int64_t G = 4 * H;
  gemm<T>(Trans::yes, Trans::no, G, I, N, T(1), dgates, G, x, I, T(0), dw_ih, I);
  gemm<T>(Trans::yes, Trans::no, G, H, N, T(1), dgates, G, h, H, T(0), dw_hh, H);
  sum_rows(db, dgates, N, G);
}

// active[t] = 1 + the last row still running at step t (lengths[n] > t), 0 if none: rows at or past
// it are all padding at step t, so the step's products can stop there. With lengths sorted in
// decreasing order (as Seq2Seq sorts its batches), the rows below active[t] are exactly the running
// ones, as in PyTorch's packed sequences.
std::vector<int64_t> active_rows(const int64_t* lengths, int64_t B, int64_t S) {
  std::vector<int64_t> active(static_cast<size_t>(S), B);
  if (!lengths) return active;
  for (int64_t t = 0; t < S; ++t) {
    int64_t last = 0;
    for (int64_t n = 0; n < B; ++n)
      if (lengths[n] > t) last = n + 1;
    active[t] = last;
  }
  return active;
}

// Splits rows [0, B) into `parts` contiguous ranges of about equal work (valid steps), so that a
// batch sorted by length does not give one thread all the long rows.
std::vector<int64_t> balanced_row_bounds(const int64_t* lengths, int64_t B, int64_t S, int64_t parts) {
  std::vector<int64_t> bounds(static_cast<size_t>(parts) + 1, B);
  bounds[0] = 0;
  double total = 0;
  for (int64_t n = 0; n < B; ++n) total += lengths ? std::min(lengths[n], S) : S;
  double acc = 0;
  int64_t part = 1;
  for (int64_t n = 0; n < B && part < parts; ++n) {
    acc += lengths ? std::min(lengths[n], S) : S;
    while (part < parts && acc >= total * part / parts) bounds[part++] = n + 1;
  }
  return bounds;
}

}  // namespace

template <class T>
void lstm_cell_forward(T* h1, T* c1, T* gates, const T* x, const T* h0, const T* c0, const T* w_ih,
                       const T* w_hh, const T* b, int64_t B, int64_t I, int64_t H) {
  const int64_t G = 4 * H;
  const KernelTable<T>& k = kernels<T>();
  if (B == 1) {
    // Batch 1 is memory-bound: threads take blocks of 8 hidden units, each streaming those units'
    // rows of all four gates of both weights (GEMVs) and finishing them with the gate pass: one
    // pass over the weights, no meeting point. Blocks of 8 match the GEMV's row blocking, so the
    // result does not depend on the split.
    const int64_t unit_blocks = (H + 7) / 8;
    const int64_t min_blocks = 65536 / (32 * (I + H) + 1) + 1;  // ~256 KiB of weights per thread
    parallel_ranges(unit_blocks, min_blocks, [&](int64_t blk0, int64_t blk1) {
      const int64_t j0 = blk0 * 8, j1 = blk1 * 8 < H ? blk1 * 8 : H, units = j1 - j0;
      for (int64_t gate = 0; gate < 4; ++gate) {
        const int64_t row = gate * H + j0;
        k.gemv(w_ih + row * I, I, x, gates + row, units, I, T(1), T(0));
        k.gemv(w_hh + row * H, H, h0, gates + row, units, H, T(1), T(1));
      }
      k.lstm_gates_forward(gates + j0, b + j0, c0 + j0, c1 + j0, h1 + j0, units, H);
    });
    return;
  }
  // Threads take rows of the batch, each doing both products and the gate pass for its rows.
  parallel_ranges(B, min_rows_per_thread(1, H + I), [&](int64_t b0, int64_t b1) {
    const int64_t rows = b1 - b0;
    gemm<T>(Trans::no, Trans::yes, rows, G, I, T(1), x + b0 * I, I, w_ih, I, T(0), gates + b0 * G, G);
    gemm<T>(Trans::no, Trans::yes, rows, G, H, T(1), h0 + b0 * H, H, w_hh, H, T(1), gates + b0 * G, G);
    for (int64_t n = b0; n < b1; ++n)  // the gate kernel adds b
      k.lstm_gates_forward(gates + n * G, b, c0 + n * H, c1 + n * H, h1 + n * H, H, H);
  });
}

template <class T>
void lstm_cell_backward(T* dx, T* dh0, T* dc0, T* dw_ih, T* dw_hh, T* db, const T* dh1,
                        const T* dc1, const T* gates, const T* c1, const T* x, const T* h0,
                        const T* c0, const T* w_ih, const T* w_hh, int64_t B, int64_t I, int64_t H) {
  const int64_t G = 4 * H;
  const KernelTable<T>& k = kernels<T>();
  T* dgates = scratch<T>(Scratch::lstm_dgates, B * G);
  std::memcpy(dc0, dc1, sizeof(T) * B * H);  // the gate kernel turns dL/dc1 into dL/dc0 in place
  parallel_ranges(B, min_rows_per_thread(1, H + I), [&](int64_t b0, int64_t b1) {
    for (int64_t n = b0; n < b1; ++n)
      k.lstm_gates_backward(dgates + n * G, dc0 + n * H, dh1 + n * H, gates + n * G, c0 + n * H,
                            c1 + n * H, nullptr, H);
    // forward: gates = x @ w_ih^T + h0 @ w_hh^T + b
    gemm<T>(Trans::no, Trans::no, b1 - b0, I, G, T(1), dgates + b0 * G, G, w_ih, I, T(0), dx + b0 * I, I);
    gemm<T>(Trans::no, Trans::no, b1 - b0, H, G, T(1), dgates + b0 * G, G, w_hh, H, T(0), dh0 + b0 * H, H);
  });
  gate_weight_grads(dw_ih, dw_hh, db, dgates, x, h0, B, I, H);
}

template <class T>
void lstm_forward(T* hs, T* hT, T* cT, T* x_tm, T* gates, T* h_all, T* c_all, const T* x, const T* h0,
                  const T* c0, const T* w_ih, const T* w_hh, const T* b, const int64_t* lengths,
                  int64_t B, int64_t S, int64_t I, int64_t H) {
  const int64_t G = 4 * H;
  const KernelTable<T>& k = kernels<T>();
  // x_tm is zero at padded steps: padding never reaches a gradient, even when it holds NaN
  // (dw_ih = dgates^T x_tm would otherwise compute 0 * NaN there).
  for (int64_t n = 0; n < B; ++n)
    for (int64_t t = 0; t < S; ++t) {
      T* x_tm_tn = x_tm + (t * B + n) * I;
      if (lengths && t >= lengths[n]) std::fill(x_tm_tn, x_tm_tn + I, T(0));
      else std::memcpy(x_tm_tn, x + (n * S + t) * I, sizeof(T) * I);
    }
  // gates[t,b] = x[b,t] @ w_ih^T for every step at once (the gate kernel adds b)
  gemm<T>(Trans::no, Trans::yes, S * B, G, I, T(1), x_tm, I, w_ih, I, T(0), gates, G);

  std::memcpy(h_all, h0, sizeof(T) * B * H);
  std::memcpy(c_all, c0, sizeof(T) * B * H);
  // One step for rows [b0, b1), after its recurrent product: the fused gate pass.
  auto gate_pass = [&](int64_t t, int64_t b0, int64_t b1) {
    const T* h_t = h_all + t * B * H;  // state entering step t
    const T* c_t = c_all + t * B * H;
    T* h_next = h_all + (t + 1) * B * H;
    T* c_next = c_all + (t + 1) * B * H;
    T* gates_t = gates + t * B * G;
    for (int64_t n = b0; n < b1; ++n) {
      T* hs_nt = hs + (n * S + t) * H;
      if (lengths && t >= lengths[n]) {  // padding: state carried, output zero
        std::fill(gates_t + n * G, gates_t + (n + 1) * G, T(0));
        std::memcpy(h_next + n * H, h_t + n * H, sizeof(T) * H);
        std::memcpy(c_next + n * H, c_t + n * H, sizeof(T) * H);
        std::fill(hs_nt, hs_nt + H, T(0));
        continue;
      }
      k.lstm_gates_forward(gates_t + n * G, b, c_t + n * H, c_next + n * H, h_next + n * H, H, H);
      std::memcpy(hs_nt, h_next + n * H, sizeof(T) * H);
    }
  };
  // gates[t, b0:b1] += h_all[t, b0:b1] @ w_hh[g0:g1]^T, columns [g0, g1); rows past the last
  // running one are skipped (their gates are zeroed by the gate pass)
  const std::vector<int64_t> active = active_rows(lengths, B, S);
  auto recurrent_product = [&](int64_t t, int64_t b0, int64_t b1, int64_t g0, int64_t g1) {
    b1 = std::min(b1, active[t]);
    if (b1 <= b0) return;
    gemm<T>(Trans::no, Trans::yes, b1 - b0, g1 - g0, H, T(1), h_all + (t * B + b0) * H, H, w_hh + g0 * H, H,
            T(1), gates + (t * B + b0) * G + g0, G);
  };
  const int64_t team = num_threads() < B / 8 ? num_threads() : B / 8;
  if (team >= 2 && 2.0 * B * G * H >= 4e6 &&
      run_team(team, [&](int64_t rank, TeamBarrier& barrier) {
        // Each step: the team splits the recurrent product by gate columns (each member packs
        // only its share of w_hh, which per-row splitting would pack whole on every member), meets,
        // splits the gate pass by rows, meets. Column bounds are multiples of 16.
        const int64_t g0 = G * rank / team / 16 * 16, g1 = rank + 1 == team ? G : G * (rank + 1) / team / 16 * 16;
        const int64_t b0 = B * rank / team, b1 = B * (rank + 1) / team;
        for (int64_t t = 0; t < S; ++t) {
          if (g1 > g0) recurrent_product(t, 0, B, g0, g1);
          barrier.wait();
          gate_pass(t, b0, b1);
          barrier.wait();
        }
      })) {
  } else {
    // Rows of the batch never interact: each thread runs all S steps for its rows [b0, b1).
    parallel_ranges(B, min_rows_per_thread(S, H), [&](int64_t b0, int64_t b1) {
      for (int64_t t = 0; t < S; ++t) {
        recurrent_product(t, b0, b1, 0, G);
        gate_pass(t, b0, b1);
      }
    });
  }
  std::memcpy(hT, h_all + S * B * H, sizeof(T) * B * H);
  std::memcpy(cT, c_all + S * B * H, sizeof(T) * B * H);
}

template <class T>
void lstm_backward(T* dx, T* dh0, T* dc0, T* dw_ih, T* dw_hh, T* db, const T* dhs,
                   const T* dhT, const T* dcT, const T* x_tm, const T* gates, const T* h_all,
                   const T* c_all, const T* w_ih, const T* w_hh, const int64_t* lengths, int64_t B,
                   int64_t S, int64_t I, int64_t H) {
  const int64_t G = 4 * H;
  const KernelTable<T>& k = kernels<T>();
  T* dgates = scratch<T>(Scratch::lstm_dgates, S * B * G);
  // dh0/dc0 carry dL/dh and dL/dc of the state entering the step being processed; the paths from
  // hs[t] and from step t+1 join there.
  if (dhT) std::memcpy(dh0, dhT, sizeof(T) * B * H); else std::fill(dh0, dh0 + B * H, T(0));
  if (dcT) std::memcpy(dc0, dcT, sizeof(T) * B * H); else std::fill(dc0, dc0 + B * H, T(0));
  // Each thread sweeps all S steps back for its rows [b0, b1), as in the forward; the ranges hold
  // about equal numbers of valid steps. Rows past the last running one skip the product. Range r
  // sums its rows' dgates into db_parts[r] as the gate kernel produces them (the rows are in cache
  // then; a pass over all S*B rows afterwards took 0.8 ms at B=128, S=29, H=256).
  const std::vector<int64_t> active = active_rows(lengths, B, S);
  int64_t parts = std::min<int64_t>(num_threads(), B / min_rows_per_thread(S, H));
  if (parts < 1) parts = 1;
  const std::vector<int64_t> bounds = balanced_row_bounds(lengths, B, S, parts);
  std::vector<T> db_parts(static_cast<size_t>(parts * G), T(0));
  auto sweep = [&](int64_t b0, int64_t b1, T* db_sum) {
    std::vector<T> dh_step(H);
    for (int64_t t = S - 1; t >= 0; --t) {
      T* dgates_t = dgates + t * B * G;
      for (int64_t n = b0; n < b1; ++n) {
        T* dgates_nt = dgates_t + n * G;
        if (lengths && t >= lengths[n]) {  // padding: no gradient, the carried state passes through
          std::fill(dgates_nt, dgates_nt + G, T(0));
          continue;
        }
        T* dh_n = dh0 + n * H;
        // forward: hs[t] = h_t, which is also the state fed to step t+1
        const T* dhs_nt = dhs ? dhs + (n * S + t) * H : nullptr;
        for (int64_t j = 0; j < H; ++j) dh_step[j] = dh_n[j] + (dhs_nt ? dhs_nt[j] : T(0));
        const int64_t row = (t * B + n);
        k.lstm_gates_backward(dgates_nt, dc0 + n * H, dh_step.data(), gates + row * G, c_all + row * H,
                              c_all + (row + B) * H, db_sum, H);
        std::fill(dh_n, dh_n + H, T(0));  // refilled below by the recurrent product
      }
      // forward: gates[t] += h_all[t] @ w_hh^T, so dL/dh_all[t] += dgates[t] @ w_hh
      const int64_t r1 = std::min(b1, active[t]);
      if (r1 > b0)
        gemm<T>(Trans::no, Trans::no, r1 - b0, H, G, T(1), dgates_t + b0 * G, G, w_hh, H, T(1), dh0 + b0 * H, H);
    }
  };
  if (!(parts > 1 && !in_parallel_region() &&
        detail::run_on_pool(parts, [&](int64_t r) { sweep(bounds[r], bounds[r + 1], db_parts.data() + r * G); }))) {
    std::fill(db_parts.begin(), db_parts.end(), T(0));
    parts = 1;
    sweep(0, B, db_parts.data());
  }
  std::copy(db_parts.begin(), db_parts.begin() + G, db);
  for (int64_t r = 1; r < parts; ++r)
    for (int64_t j = 0; j < G; ++j) db[j] += db_parts[r * G + j];
  // forward: gates = x_tm @ w_ih^T + h_all[:S] @ w_hh^T + b over all S*B rows
  T* dx_tm = scratch<T>(Scratch::lstm_dx_tm, S * B * I);
  gemm<T>(Trans::no, Trans::no, S * B, I, G, T(1), dgates, G, w_ih, I, T(0), dx_tm, I);
  for (int64_t n = 0; n < B; ++n)
    for (int64_t t = 0; t < S; ++t) std::memcpy(dx + (n * S + t) * I, dx_tm + (t * B + n) * I, sizeof(T) * I);
  int64_t running = 0;
  for (int64_t t = 0; t < S; ++t) running += active[t];
  if (running * 4 < S * B * 3) {
    // A quarter or more of the rows are padding at their step (sorted lengths): products over each
    // step's running rows only, accumulated, instead of one product over all S*B rows.
    std::fill(dw_ih, dw_ih + G * I, T(0));
    std::fill(dw_hh, dw_hh + G * H, T(0));
    for (int64_t t = 0; t < S; ++t) {
      if (active[t] == 0) continue;
      gemm<T>(Trans::yes, Trans::no, G, I, active[t], T(1), dgates + t * B * G, G, x_tm + t * B * I, I, T(1),
              dw_ih, I);
      gemm<T>(Trans::yes, Trans::no, G, H, active[t], T(1), dgates + t * B * G, G, h_all + t * B * H, H, T(1),
              dw_hh, H);
    }
  } else {
    gemm<T>(Trans::yes, Trans::no, G, I, S * B, T(1), dgates, G, x_tm, I, T(0), dw_ih, I);
    gemm<T>(Trans::yes, Trans::no, G, H, S * B, T(1), dgates, G, h_all, H, T(0), dw_hh, H);
  }
}

#define S2S_INSTANTIATE_LSTM(T)                                                                    \
  template void lstm_cell_forward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*, \
                                     const T*, int64_t, int64_t, int64_t);                         \
  template void lstm_cell_backward<T>(T*, T*, T*, T*, T*, T*, const T*, const T*, const T*,        \
                                      const T*, const T*, const T*, const T*, const T*, const T*,  \
                                      int64_t, int64_t, int64_t);                                  \
  template void lstm_forward<T>(T*, T*, T*, T*, T*, T*, T*, const T*, const T*, const T*,          \
                                const T*, const T*, const T*, const int64_t*, int64_t, int64_t,    \
                                int64_t, int64_t);                                                 \
  template void lstm_backward<T>(T*, T*, T*, T*, T*, T*, const T*, const T*, const T*,             \
                                 const T*, const T*, const T*, const T*, const T*, const T*,       \
                                 const int64_t*, int64_t, int64_t, int64_t, int64_t);
S2S_INSTANTIATE_LSTM(float)
S2S_INSTANTIATE_LSTM(double)

}  // namespace s2s
