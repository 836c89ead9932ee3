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

// A padded sequence, the fast way: one input GEMM over all B*S rows, then per step one recurrent
// GEMM accumulated straight into that step's gate rows and one fused pass over them.
// Step t of sequence b runs only while t < lengths[b] (lengths == nullptr: all S); after that its
// state is carried unchanged and hs[b,t] = 0.
// The saved buffers are time-major, so each step's rows are contiguous: the recurrent GEMMs read
// and write whole blocks, the states need no copying (state t+1 is written where step t+1 reads
// it), and the weight-gradient GEMMs of the backward see row-aligned [S*B, .] matrices.
// out:   hs [B,S,H], hT [B,H], cT [B,H]
// saved: x_tm [S,B,I] (x, time-major), gates [S,B,G] (activations; 0 past a length),
//        h_all [S+1,B,H], c_all [S+1,B,H] (state before step 0, and after each step)
// in:    x [B,S,I], h0 [B,H], c0 [B,H], w_ih [G,I], w_hh [G,H], b [G], lengths [B] or nullptr
template <class T>
void lstm_forward(T* hs, T* hT, T* cT, T* x_tm, T* gates, T* h_all, T* c_all, const T* x, const T* h0,
                  const T* c0, const T* w_ih, const T* w_hh, const T* b, const int64_t* lengths,
                  int64_t B, int64_t S, int64_t I, int64_t H);

// Backward: a sweep from the last step to the first (fused gate backward, one GEMM per step for
// dL/dh_prev; db summed there too), then one large GEMM for each of dx, dw_ih, dw_hh over all S*B
// rows.
// out:     dx [B,S,I], dh0 [B,H], dc0 [B,H], dw_ih [G,I], dw_hh [G,H], db [G]
// in:      dhs [B,S,H], dhT [B,H], dcT [B,H] (each may be nullptr: zero), and the forward's
//          x_tm, gates, h_all, c_all, w_ih, w_hh, lengths
// scratch: dgates [S,B,G], dx_tm [S,B,I] (workspace.h)
template <class T>
void lstm_backward(T* dx, T* dh0, T* dc0, T* dw_ih, T* dw_hh, T* db, const T* dhs,
                   const T* dhT, const T* dcT, const T* x_tm, const T* gates, const T* h_all,
                   const T* c_all, const T* w_ih, const T* w_hh, const int64_t* lengths, int64_t B,
                   int64_t S, int64_t I, int64_t H);

}  // namespace s2s
