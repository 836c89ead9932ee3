// LSTM forward and backward; shapes and argument order in lstm.h.
// Letters: B batch, S time steps, I input size, H hidden size, G = 4H.
#include "ops/lstm.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "runtime/blas.h"
#include "kernels/kernels.h"
#include "runtime/parallel.h"
#include "runtime/recurrent_weights.h"
#include "runtime/workspace.h"

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

// Members of the team that runs an LSTM sequence over B rows, meeting twice per step (forward and
// backward), or 0 where the rows are too few or a step's products too small to share.
int64_t team_size(int64_t B, int64_t H) {
  const int64_t team = std::min<int64_t>(num_threads(), B / 8);
  return team >= 2 && 2.0 * B * 4 * H * H >= 4e6 ? team : 0;
}

// First of the gate columns [0, G) of team member r (multiples of 16); r == team gives the end, G.
int64_t team_column(int64_t G, int64_t team, int64_t r) { return r == team ? G : G * r / team / 16 * 16; }

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

// The input product folded into each step's recurrent product ([h | x] @ [w_hh | w_ih]^T, K = H + I)
// or done as one GEMM over all S*B rows up front (and dx as one GEMM after the sweep). Folding
// saves writing the [S*B, 4H] gates before the steps and rereading dgates for dx, passes with
// little arithmetic per byte when I is small, at the price of a dearer product per step; with a
// large input the GEMMs over all rows win, where BLAS runs near its peak. Up to 8 rows the steps'
// products are GEMVs (blas.cpp), which gain nothing from it, and copying the weights side by side
// would cost a batch-1 decode. (The measurements behind the threshold:
// benchmarks/results/design-measurements.md.)
bool fold_input(int64_t B, int64_t I, int64_t H) { return B > 8 && 4 * I <= H; }

// [w_hh | w_ih] as one [G, H+I] matrix, in this thread's scratch.
template <class T>
const T* concat_weights(const T* w_hh, const T* w_ih, int64_t H, int64_t I) {
  const int64_t G = 4 * H, HX = H + I;
  T* w_cat = scratch<T>(Scratch::lstm_w_cat, G * HX);
  for (int64_t g = 0; g < G; ++g) {
    std::memcpy(w_cat + g * HX, w_hh + g * H, sizeof(T) * H);
    std::memcpy(w_cat + g * HX + H, w_ih + g * I, sizeof(T) * I);
  }
  return w_cat;
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
void lstm_forward(T* hs, T* hT, T* cT, T* hx_all, T* gates, T* c_all, const T* x, const T* h0, const T* c0,
                  const T* w_ih, const T* w_hh, const T* b, const int64_t* lengths, int64_t B, int64_t S,
                  int64_t I, int64_t H) {
  const int64_t G = 4 * H, HX = H + I;
  const KernelTable<T>& k = kernels<T>();
  // hx_all[t, n] = [h entering step t | x[n, t]]. The x part is zero at padded steps (and in block
  // S): padding never reaches a gradient, even when it holds NaN (dw_ih = dgates^T x would
  // otherwise compute 0 * NaN there).
  for (int64_t t = 0; t <= S; ++t)
    for (int64_t n = 0; n < B; ++n) {
      T* x_tn = hx_all + (t * B + n) * HX + H;
      if (t == S || (lengths && t >= lengths[n])) std::fill(x_tn, x_tn + I, T(0));
      else std::memcpy(x_tn, x + (n * S + t) * I, sizeof(T) * I);
    }
  for (int64_t n = 0; n < B; ++n) std::memcpy(hx_all + n * HX, h0 + n * H, sizeof(T) * H);
  std::memcpy(c_all, c0, sizeof(T) * B * H);
  const bool fold = fold_input(B, I, H);
  const T* w_cat = fold ? concat_weights(w_hh, w_ih, H, I) : nullptr;
  // gates[t,b] = x[b,t] @ w_ih^T for every step at once, unless folded into the steps' products
  // (the gate kernel adds b)
  if (!fold) gemm<T>(Trans::no, Trans::yes, S * B, G, I, T(1), hx_all + H, HX, w_ih, I, T(0), gates, G);

  // One step for rows [b0, b1), after its recurrent product: the fused gate pass.
  auto gate_pass = [&](int64_t t, int64_t b0, int64_t b1) {
    const T* hx_t = hx_all + t * B * HX;  // state entering step t
    const T* c_t = c_all + t * B * H;
    T* hx_next = hx_all + (t + 1) * B * HX;
    T* c_next = c_all + (t + 1) * B * H;
    T* gates_t = gates + t * B * G;
    for (int64_t n = b0; n < b1; ++n) {
      T* hs_nt = hs + (n * S + t) * H;
      if (lengths && t >= lengths[n]) {  // padding: state carried, output zero
        std::fill(gates_t + n * G, gates_t + (n + 1) * G, T(0));
        std::memcpy(hx_next + n * HX, hx_t + n * HX, sizeof(T) * H);
        std::memcpy(c_next + n * H, c_t + n * H, sizeof(T) * H);
        std::fill(hs_nt, hs_nt + H, T(0));
        continue;
      }
      k.lstm_gates_forward(gates_t + n * G, b, c_t + n * H, c_next + n * H, hx_next + n * HX, H, H);
      std::memcpy(hs_nt, hx_next + n * HX, sizeof(T) * H);
    }
  };
  // The weights of the steps' products for gate columns [g0, g1): [w_hh | w_ih][g0:g1] (folded) or
  // w_hh[g0:g1], prepared once per call by the thread that multiplies with them.
  auto step_weights = [&](int64_t g0, int64_t g1) {
    if (fold) return RecurrentWeights<T>(Trans::yes, HX, g1 - g0, w_cat + g0 * HX, HX, HX, G, /*accumulate=*/false);
    return RecurrentWeights<T>(Trans::yes, H, g1 - g0, w_hh + g0 * H, H, HX, G, /*accumulate=*/true);
  };
  // gates[t, b0:b1] = [h | x] @ [w_hh | w_ih][g0:g1]^T (folded) or += h @ w_hh[g0:g1]^T, columns
  // [g0, g1) of step_weights(g0, g1); rows past the last running one are skipped (their gates are
  // zeroed by the gate pass)
  const std::vector<int64_t> active = active_rows(lengths, B, S);
  auto recurrent_product = [&](int64_t t, int64_t b0, int64_t b1, int64_t g0, const RecurrentWeights<T>& weights) {
    b1 = std::min(b1, active[t]);
    if (b1 <= b0) return;
    weights.multiply(b1 - b0, hx_all + (t * B + b0) * HX, gates + (t * B + b0) * G + g0);
  };
  const int64_t team = team_size(B, H);
  if (team >= 2 &&
      run_team(team, [&](int64_t rank, TeamBarrier& barrier) {
        // Each step: the team splits the recurrent product by gate columns (each member packs
        // only its share of the weights, which per-row splitting would pack whole on every
        // member), meets, splits the gate pass by rows, meets. Column bounds are multiples of 16.
        const int64_t g0 = team_column(G, team, rank), g1 = team_column(G, team, rank + 1);
        const int64_t b0 = B * rank / team, b1 = B * (rank + 1) / team;
        const RecurrentWeights<T> weights = step_weights(g0, g1);
        for (int64_t t = 0; t < S; ++t) {
          if (g1 > g0) recurrent_product(t, 0, B, g0, weights);
          barrier.wait();
          gate_pass(t, b0, b1);
          barrier.wait();
        }
      })) {
  } else {
    // Rows of the batch never interact: each thread runs all S steps for its rows [b0, b1).
    parallel_ranges(B, min_rows_per_thread(S, H), [&](int64_t b0, int64_t b1) {
      const RecurrentWeights<T> weights = step_weights(0, G);
      for (int64_t t = 0; t < S; ++t) {
        recurrent_product(t, b0, b1, 0, weights);
        gate_pass(t, b0, b1);
      }
    });
  }
  for (int64_t n = 0; n < B; ++n) std::memcpy(hT + n * H, hx_all + (S * B + n) * HX, sizeof(T) * H);
  std::memcpy(cT, c_all + S * B * H, sizeof(T) * B * H);
}

template <class T>
void lstm_backward(T* dx, T* dh0, T* dc0, T* dw_ih, T* dw_hh, T* db, const T* dhs, const T* dhT, const T* dcT,
                   const T* hx_all, const T* gates, const T* c_all, const T* w_ih, const T* w_hh,
                   const int64_t* lengths, int64_t B, int64_t S, int64_t I, int64_t H) {
  const int64_t G = 4 * H, HX = H + I;
  const KernelTable<T>& k = kernels<T>();
  const bool fold = fold_input(B, I, H);
  const T* w_cat = fold ? concat_weights(w_hh, w_ih, H, I) : nullptr;
  T* dgates = scratch<T>(Scratch::lstm_dgates, S * B * G);
  // dhx[n] = [dL/dh of the state entering the step being processed | dL/dx of that step (folded)];
  // the paths from hs[t] and from step t+1 join in the h part. dc0 carries dL/dc the same way.
  T* dhx = scratch<T>(Scratch::lstm_dhx, B * HX);
  for (int64_t n = 0; n < B; ++n) {
    T* dh_n = dhx + n * HX;
    if (dhT) std::memcpy(dh_n, dhT + n * H, sizeof(T) * H); else std::fill(dh_n, dh_n + H, T(0));
  }
  if (dcT) std::memcpy(dc0, dcT, sizeof(T) * B * H); else std::fill(dc0, dc0 + B * H, T(0));
  const std::vector<int64_t> active = active_rows(lengths, B, S);
  // Row n at step t: dgates from dh (the state's gradient plus dhs[n, t]) and dc; false for padding,
  // whose dgates are zero and whose carried state's gradients pass through unchanged. db_sum gains
  // the row's dgates while they are in cache (a separate pass over all S*B rows would read them
  // all again).
  auto row_backward = [&](int64_t t, int64_t n, T* dh_step, T* db_sum) {
    T* dgates_nt = dgates + (t * B + n) * G;
    if (lengths && t >= lengths[n]) {
      std::fill(dgates_nt, dgates_nt + G, T(0));
      return false;
    }
    const T* dh_n = dhx + n * HX;
    // forward: hs[t] = h_t, which is also the state fed to step t+1
    const T* dhs_nt = dhs ? dhs + (n * S + t) * H : nullptr;
    for (int64_t j = 0; j < H; ++j) dh_step[j] = dh_n[j] + (dhs_nt ? dhs_nt[j] : T(0));
    const int64_t row = t * B + n;
    k.lstm_gates_backward(dgates_nt, dc0 + n * H, dh_step, gates + row * G, c_all + row * H, c_all + (row + B) * H,
                          db_sum, H);
    return true;
  };
  // forward: gates[t] += [h | x][t] @ [w_hh | w_ih]^T (or h[t] @ w_hh^T), so the product of
  // dgates[t] with those weights is dL/d[h | x][t]: P = H + I columns folded, else H.
  const int64_t P = fold ? HX : H;
  const T* w_back = fold ? w_cat : w_hh;
  std::vector<T> db_parts;
  const int64_t team = team_size(B, H);
  bool swept = false;
  if (team >= 2) {
    // The team splits each step's product along K, the gate columns: member r multiplies
    // dgates[t][:, g0:g1] by rows g0:g1 of the weights into its own partial [B, P], so it packs only
    // its share of the weights (split by rows of the batch, every thread packed all of them on
    // every step: twice the forward's packing). Members meet, then each adds up the partials for
    // its rows, which gives the next step's dh, and runs their gate pass; they meet again.
    db_parts.assign(static_cast<size_t>(team * G), T(0));
    T* partials = scratch<T>(Scratch::lstm_dh_partials, team * B * P);
    const std::vector<int64_t> row_bounds = balanced_row_bounds(lengths, B, S, team);
    swept = run_team(team, [&](int64_t rank, TeamBarrier& barrier) {
      const int64_t g0 = team_column(G, team, rank), g1 = team_column(G, team, rank + 1);
      const int64_t b0 = row_bounds[rank], b1 = row_bounds[rank + 1];
      T* db_sum = db_parts.data() + rank * G;
      std::vector<T> dh_step(H);
      // partial = dgates[t][:, g0:g1] @ w_back[g0:g1], these weights prepared once for all steps
      const RecurrentWeights<T> weights(Trans::no, g1 - g0, P, w_back + g0 * P, P, G, P, /*accumulate=*/false);
      for (int64_t t = S - 1; t >= 0; --t) {
        for (int64_t n = b0; n < b1; ++n) row_backward(t, n, dh_step.data(), db_sum);
        barrier.wait();
        if (active[t] > 0 && g1 > g0) weights.multiply(active[t], dgates + t * B * G + g0, partials + rank * B * P);
        barrier.wait();
        for (int64_t n = b0; n < b1; ++n) {
          T* dx_nt = dx + (n * S + t) * I;
          if (lengths && t >= lengths[n]) {  // the state's gradient passes through
            if (fold) std::fill(dx_nt, dx_nt + I, T(0));
            continue;
          }
          T* dhx_n = dhx + n * HX;
          bool summed = false;
          for (int64_t r = 0; r < team; ++r) {
            if (team_column(G, team, r + 1) == team_column(G, team, r)) continue;  // no columns: no partial
            const T* part = partials + (r * B + n) * P;
            if (!summed) std::memcpy(dhx_n, part, sizeof(T) * P);
            else
              for (int64_t j = 0; j < P; ++j) dhx_n[j] += part[j];
            summed = true;
          }
          if (fold) std::memcpy(dx_nt, dhx_n + H, sizeof(T) * I);
        }
      }
    });
  }
  if (!swept) {
    // Each thread sweeps all S steps back for its rows [b0, b1), as in the forward's fallback; the
    // ranges hold about equal numbers of valid steps. Rows past the last running one skip the
    // product.
    int64_t parts = std::min<int64_t>(num_threads(), B / min_rows_per_thread(S, H));
    if (parts < 1) parts = 1;
    const std::vector<int64_t> bounds = balanced_row_bounds(lengths, B, S, parts);
    auto sweep = [&](int64_t b0, int64_t b1, T* db_sum) {
      std::vector<T> dh_step(H);
      // dhx[b0:r1] += dgates[t][b0:r1] @ w_back, the weights prepared once for all steps
      const RecurrentWeights<T> weights(Trans::no, G, P, w_back, P, G, HX, /*accumulate=*/true);
      // Padded rows below the last running one (unsorted lengths) sit inside the product, which
      // adds 0 * weights to them: their carried dh is set aside and put back, so that it passes
      // through exactly (also with non-finite weights), as on the team route.
      std::vector<int64_t> padded;
      std::vector<T> padded_dh;
      for (int64_t t = S - 1; t >= 0; --t) {
        const int64_t r1 = std::min(b1, active[t]);
        padded.clear();
        padded_dh.clear();
        for (int64_t n = b0; n < b1; ++n) {
          T* dhx_n = dhx + n * HX;
          if (row_backward(t, n, dh_step.data(), db_sum)) {
            std::fill(dhx_n, dhx_n + P, T(0));  // refilled below by the product (dx too, folded)
          } else {
            if (fold) std::fill(dhx_n + H, dhx_n + HX, T(0));  // no dx at a padded step
            if (n < r1) {
              padded.push_back(n);
              padded_dh.insert(padded_dh.end(), dhx_n, dhx_n + H);
            }
          }
        }
        if (r1 > b0) weights.multiply(r1 - b0, dgates + (t * B + b0) * G, dhx + b0 * HX);
        for (size_t i = 0; i < padded.size(); ++i) {
          T* dhx_n = dhx + padded[i] * HX;
          std::copy(padded_dh.begin() + i * H, padded_dh.begin() + (i + 1) * H, dhx_n);
          if (fold) std::fill(dhx_n + H, dhx_n + HX, T(0));
        }
        if (fold)
          for (int64_t n = b0; n < b1; ++n) std::memcpy(dx + (n * S + t) * I, dhx + n * HX + H, sizeof(T) * I);
      }
    };
    db_parts.assign(static_cast<size_t>(parts * G), T(0));
    if (!(parts > 1 && !in_parallel_region() &&
          detail::run_on_pool(parts, [&](int64_t r) { sweep(bounds[r], bounds[r + 1], db_parts.data() + r * G); }))) {
      db_parts.assign(static_cast<size_t>(G), T(0));
      sweep(0, B, db_parts.data());
    }
  }
  for (int64_t n = 0; n < B; ++n) std::memcpy(dh0 + n * H, dhx + n * HX, sizeof(T) * H);
  // db = the threads' partial sums added in thread order (stepped by G: with H = 0 there are none)
  std::copy(db_parts.begin(), db_parts.begin() + G, db);
  for (size_t part = static_cast<size_t>(G); part < db_parts.size(); part += static_cast<size_t>(G))
    for (int64_t j = 0; j < G; ++j) db[j] += db_parts[part + j];
  if (!fold) {
    // forward: gates = x @ w_ih^T + ... over all S*B rows
    T* dx_tm = scratch<T>(Scratch::lstm_dx_tm, S * B * I);
    gemm<T>(Trans::no, Trans::no, S * B, I, G, T(1), dgates, G, w_ih, I, T(0), dx_tm, I);
    for (int64_t n = 0; n < B; ++n)
      for (int64_t t = 0; t < S; ++t) std::memcpy(dx + (n * S + t) * I, dx_tm + (t * B + n) * I, sizeof(T) * I);
  }
  // [dw_hh | dw_ih] = dgates^T @ [h | x] over the S*B rows of steps 0..S-1: one product
  T* dw_cat = scratch<T>(Scratch::lstm_dw_cat, G * HX);
  int64_t running = 0;
  for (int64_t t = 0; t < S; ++t) running += active[t];
  if (running * 4 < S * B * 3) {
    // A quarter or more of the rows are padding at their step (sorted lengths): products over each
    // step's running rows only, accumulated, instead of one product over all S*B rows.
    std::fill(dw_cat, dw_cat + G * HX, T(0));
    for (int64_t t = 0; t < S; ++t)
      if (active[t] > 0)
        gemm<T>(Trans::yes, Trans::no, G, HX, active[t], T(1), dgates + t * B * G, G, hx_all + t * B * HX, HX, T(1),
                dw_cat, HX);
  } else {
    gemm<T>(Trans::yes, Trans::no, G, HX, S * B, T(1), dgates, G, hx_all, HX, T(0), dw_cat, HX);
  }
  for (int64_t g = 0; g < G; ++g) {
    std::memcpy(dw_hh + g * H, dw_cat + g * HX, sizeof(T) * H);
    std::memcpy(dw_ih + g * I, dw_cat + g * HX + H, sizeof(T) * I);
  }
}

#define S2S_INSTANTIATE_LSTM(T)                                                                    \
  template void lstm_cell_forward<T>(T*, T*, T*, const T*, const T*, const T*, const T*, const T*, \
                                     const T*, int64_t, int64_t, int64_t);                         \
  template void lstm_cell_backward<T>(T*, T*, T*, T*, T*, T*, const T*, const T*, const T*,        \
                                      const T*, const T*, const T*, const T*, const T*, const T*,  \
                                      int64_t, int64_t, int64_t);                                  \
  template void lstm_forward<T>(T*, T*, T*, T*, T*, T*, const T*, const T*, const T*, const T*,    \
                                const T*, const T*, const int64_t*, int64_t, int64_t, int64_t,     \
                                int64_t);                                                          \
  template void lstm_backward<T>(T*, T*, T*, T*, T*, T*, const T*, const T*, const T*, const T*,   \
                                 const T*, const T*, const T*, const T*, const int64_t*, int64_t,  \
                                 int64_t, int64_t, int64_t);
S2S_INSTANTIATE_LSTM(float)
S2S_INSTANTIATE_LSTM(double)

void lstm_step_inference(float* h1, float* c1, float* gates, const float* h0, const float* c0,
                         const WeightMatrix& w_hh, const float* b, int64_t B, int64_t H) {
  const KernelTable<float>& k = kernels<float>();
  const int64_t G = 4 * H;
  matmul(w_hh, h0, B, gates, /*accumulate=*/true);  // gates += h0 @ w_hh^T
  for (int64_t n = 0; n < B; ++n)
    k.lstm_gates_forward(gates + n * G, b, c0 + n * H, c1 + n * H, h1 + n * H, H, H);
}

void lstm_sequence_inference(float* hs, float* hT, float* cT, const float* x, const WeightMatrix& w_ih,
                             const WeightMatrix& w_hh, const float* b, const int64_t* lengths, int64_t B,
                             int64_t S, int64_t I, int64_t H) {
  const KernelTable<float>& k = kernels<float>();
  const int64_t G = 4 * H;
  for (int64_t n = 0; n < B; ++n)  // padding: zero outputs
    std::fill(hs + (n * S + lengths[n]) * H, hs + (n + 1) * S * H, 0.0f);
  // Row-major weights: the training recurrence's products (lstm_forward: the same fold, shapes and
  // sums, so the same numbers); weights in panels (the compiled decoder's): matmul's gemm_panels,
  // the input product over all steps and then one product a step (its own sums; folding needs
  // rows). Without the training's saved buffers: only the running state, in this thread's scratch.
  // Rows run while t < lengths[n] (a prefix, the rows being sorted by length); a row's final state
  // is written when it ends.
  const bool fold = w_ih.is_f32() && w_hh.is_f32() && !w_ih.in_panels() && !w_hh.in_panels() && fold_input(B, I, H);
  const int64_t HX = fold ? H + I : H;  // state rows: [h | x_t] when folded, else h
  float* state = scratch<float>(Scratch::lstm_inference_state, B * (HX + 2 * H + G));
  float* hx = state;               // [B, HX]
  float* c = hx + B * HX;          // [B, H]
  float* c_next = c + B * H;       // [B, H]
  float* gates = c_next + B * H;   // [B, G] (folded)
  std::fill(hx, hx + B * HX, 0.0f);
  std::fill(c, c + B * H, 0.0f);
  const float* w_cat = fold ? concat_weights(w_hh.f32.data(), w_ih.f32.data(), H, I) : nullptr;
  float* x_proj = nullptr;  // [S, B, G]: every step's input product at once (not folded), time-major
  if (!fold) {              // as lstm_forward computes it (rows in its order, padding zero): its sums
    float* x_proj_in = scratch<float>(Scratch::lstm_inference_input, S * B * (G + I));
    x_proj = x_proj_in + S * B * I;
    for (int64_t t = 0; t < S; ++t)
      for (int64_t n = 0; n < B; ++n) {
        float* x_tn = x_proj_in + (t * B + n) * I;
        if (t < lengths[n]) std::memcpy(x_tn, x + (n * S + t) * I, sizeof(float) * I);
        else std::fill(x_tn, x_tn + I, 0.0f);
      }
    matmul(w_ih, x_proj_in, S * B, x_proj, false);
  }
  // float32 recurrent weights are prepared once for the whole sequence (recurrent_weights.h)
  std::unique_ptr<RecurrentWeights<float>> recurrent;
  if (fold) recurrent.reset(new RecurrentWeights<float>(Trans::yes, HX, G, w_cat, HX, HX, G, /*accumulate=*/false));
  else if (w_hh.is_f32() && !w_hh.in_panels())
    recurrent.reset(new RecurrentWeights<float>(Trans::yes, H, G, w_hh.f32.data(), H, HX, G, /*accumulate=*/true));
  for (int64_t t = 0; t < S; ++t) {
    int64_t active = 0;  // rows still running
    while (active < B && lengths[active] > t) ++active;
    if (active == 0) break;
    float* gates_t = gates;  // [active, G]
    if (fold) {
      for (int64_t n = 0; n < active; ++n)
        std::memcpy(hx + n * HX + H, x + (n * S + t) * I, sizeof(float) * I);
      recurrent->multiply(active, hx, gates);
    } else {  // gates = x_proj[t] += h @ w_hh^T, in place
      gates_t = x_proj + t * B * G;
      if (recurrent) recurrent->multiply(active, hx, gates_t);
      else matmul(w_hh, hx, active, gates_t, true);
    }
    for (int64_t n = 0; n < active; ++n) {
      float* h_n = hx + n * HX;  // the products have read h: the new one replaces it
      k.lstm_gates_forward(gates_t + n * G, b, c + n * H, c_next + n * H, h_n, H, H);
      std::memcpy(hs + (n * S + t) * H, h_n, sizeof(float) * H);
      if (t == lengths[n] - 1) {
        std::memcpy(hT + n * H, h_n, sizeof(float) * H);
        std::memcpy(cT + n * H, c_next + n * H, sizeof(float) * H);
      }
    }
    std::swap(c, c_next);
  }
}

}  // namespace s2s
