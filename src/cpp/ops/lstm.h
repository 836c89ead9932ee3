// LSTM, PyTorch's equations, gate order (i, f, g, o) and weight shapes:
//   gates = x @ w_ih^T + h @ w_hh^T + b        b = b_ih + b_hh
//   c' = f * c + i * g,   h' = o * tanh(c')
//
// Letters: B batch, S time steps, I input size, H hidden size, G = 4H.
// Pointers are C-contiguous row-major arrays of the shapes in the comments. Outputs come first,
// then the buffers saved for backward, then inputs, then sizes. Gradients are written (=), never
// accumulated into.
#pragma once
#include <cstdint>

#include "runtime/matrix.h"

namespace s2s {

// One step.
// out:   h1 [B,H], c1 [B,H]
// saved: gates [B,G] (activations i, f, g, o)
// in:    x [B,I], h0 [B,H], c0 [B,H], w_ih [G,I], w_hh [G,H], b [G]
template <class T>
void lstm_cell_forward(T* h1, T* c1, T* gates, const T* x, const T* h0, const T* c0, const T* w_ih,
                       const T* w_hh, const T* b, int64_t B, int64_t I, int64_t H);

// out: dx [B,I], dh0 [B,H], dc0 [B,H], dw_ih [G,I], dw_hh [G,H], db [G]
// in:  dh1 [B,H], dc1 [B,H], and the forward's gates, c1, x, h0, c0, w_ih, w_hh
// scratch: dgates [B,G] (workspace.h)
template <class T>
void lstm_cell_backward(T* dx, T* dh0, T* dc0, T* dw_ih, T* dw_hh, T* db, const T* dh1,
                        const T* dc1, const T* gates, const T* c1, const T* x, const T* h0,
                        const T* c0, const T* w_ih, const T* w_hh, int64_t B, int64_t I, int64_t H);

// A padded sequence, the fast way: per step one GEMM writing (or accumulating into) that step's
// gate rows and one fused pass over them. The input product is either one GEMM over all B*S rows
// up front, or, for a small input (I <= H/4) and more than 8 rows, folded into each step's product
// as [h | x] @ [w_hh | w_ih]^T (see fold_input in lstm.cpp).
// Step t of sequence b runs only while t < lengths[b] (lengths == nullptr: all S); after that its
// state is carried unchanged and hs[b,t] = 0.
// The saved buffers are time-major, so each step's rows are contiguous: the per-step GEMMs read
// and write whole blocks, the states need no copying (state t+1 is written where step t+1 reads
// it), and the weight-gradient GEMM of the backward sees a row-aligned [S*B, H+I] matrix.
// out:   hs [B,S,H], hT [B,H], cT [B,H]
// saved: hx_all [S+1,B,H+I]: row (t, b) = [h entering step t | x[b,t]] (x zero past a length and
//        in block S; block S's h is the final state); gates [S,B,G] (activations; 0 past a
//        length); c_all [S+1,B,H] (cell state before step 0, and after each step)
// in:    x [B,S,I], h0 [B,H], c0 [B,H], w_ih [G,I], w_hh [G,H], b [G], lengths [B] or nullptr
// scratch: [w_hh | w_ih] [G,H+I] when folded (workspace.h)
template <class T>
void lstm_forward(T* hs, T* hT, T* cT, T* hx_all, T* gates, T* c_all, const T* x, const T* h0, const T* c0,
                  const T* w_ih, const T* w_hh, const T* b, const int64_t* lengths, int64_t B, int64_t S,
                  int64_t I, int64_t H);

// Backward: a sweep from the last step to the first (fused gate backward, which also sums db; one
// GEMM per step for dL/dh_prev, and for dL/dx too when the input is folded), then one GEMM over all
// S*B rows for [dw_hh | dw_ih] (and one for dx when the input is not folded).
// out:     dx [B,S,I], dh0 [B,H], dc0 [B,H], dw_ih [G,I], dw_hh [G,H], db [G]
// in:      dhs [B,S,H], dhT [B,H], dcT [B,H] (each may be nullptr: zero), and the forward's
//          hx_all, gates, c_all, w_ih, w_hh, lengths
// scratch: dgates [S,B,G], dhx [B,H+I], [dw_hh | dw_ih] [G,H+I], and [w_hh | w_ih] or dx_tm [S,B,I]
//          (workspace.h)
template <class T>
void lstm_backward(T* dx, T* dh0, T* dc0, T* dw_ih, T* dw_hh, T* db, const T* dhs, const T* dhT, const T* dcT,
                   const T* hx_all, const T* gates, const T* c_all, const T* w_ih, const T* w_hh,
                   const int64_t* lengths, int64_t B, int64_t S, int64_t I, int64_t H);

// ---- inference: weights prepared once (runtime/matrix.h: float32 or bfloat16), nothing saved ----

// One step of B rows, the recurrence both inference entries share.
// in/out: gates [B,G]: on entry the input part of the pre-activations (x @ w_ih^T and anything
//         else the caller feeds in), without b; on return the activations
// out:    h1 [B,H], c1 [B,H]
// in:     h0 [B,H], c0 [B,H], w_hh [G,H], b [G] (zeros when gates already hold the bias)
void lstm_step_inference(float* h1, float* c1, float* gates, const float* h0, const float* c0,
                         const WeightMatrix& w_hh, const float* b, int64_t B, int64_t H);

// A padded sequence from a zero state, rows sorted by length (longest first; each >= 1).
// out: hs [B,S,H] (0 past a length), hT [B,H], cT [B,H] (the state after each row's last step)
// in:  x [B,S,I], w_ih [G,I], w_hh [G,H], b [G], lengths [B]
// The products of lstm_forward (row-major float32: the same numbers; a small input folded into
// each step's product as there; float32 in panels: matmul's own sums, never folded), without its
// saved buffers: the running state lives in this thread's scratch, and the steps run over the rows
// still running. Unfolded, one product gives every step's input part first.
void lstm_sequence_inference(float* hs, float* hT, float* cT, const float* x, const WeightMatrix& w_ih,
                             const WeightMatrix& w_hh, const float* b, const int64_t* lengths, int64_t B,
                             int64_t S, int64_t I, int64_t H);

}  // namespace s2s
