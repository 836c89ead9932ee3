// The product repeated at every step of a recurrence with the same weights (an LSTM's recurrent
// product, forward and backward): the weights are prepared once per call, and each step only
// multiplies. Two backends, chosen at run time for the whole process:
//   blas    gemm() (blas.h) at every step, which repacks the weights each time (the portable one).
//   onednn  oneDNN's matmul primitive, the weights reordered once into the layout it asks for;
//           built where CMake finds libdnnl (S2SEXT_ONEDNN), float32 only (double takes gemm()).
//           oneDNN runs single-threaded inside the calling thread: s2sext's own threads split the
//           work (parallel.h), as with BLAS.
// The start-up backend is oneDNN where it is built and packs the weights on this CPU (a blocked
// layout of its own: its brgemm matmul, AVX-512 in oneDNN 2.6), BLAS otherwise: on an AVX2-only
// CPU oneDNN 2.6 multiplies the plain layout with its own jit sgemm ("gemm:jit"), which packs at
// every step as BLAS does and was slower than OpenBLAS there (an encoder at batch 32: 1.5x the
// time).
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "runtime/blas.h"

namespace s2s {

enum class RecurrentBackend { blas, onednn };

bool onednn_built();                     // true where the oneDNN backend was compiled in
bool onednn_packs_weights();             // built, and its matmul packs recurrent weights on this CPU
std::string onednn_version();            // "major.minor.patch" of the linked oneDNN, "" if not built
RecurrentBackend recurrent_backend();    // the active backend
void set_recurrent_backend(RecurrentBackend backend);  // std::invalid_argument: onednn not built
const char* recurrent_backend_name(RecurrentBackend backend);  // "blas" or "onednn"
bool parse_recurrent_backend(const std::string& name, RecurrentBackend* out);
// Weights prepared for oneDNN since start-up (all threads): shows that the backend ran.
int64_t onednn_weights_prepared();

// Weights of C[M,N] = A[M,K] @ op(W) + beta * C, beta 0 or 1 (accumulate), with op(W) = W^T for
// W [N,K] (Trans::yes) or W for W [K,N] (Trans::no), row stride ldw; A's and C's row strides lda
// and ldc are fixed for the object's life, M may change from step to step. Made and used by one
// thread (the one that multiplies, inside a team or a parallel range), which owns it; W must stay
// unchanged while it lives. The backend is the one active when it is made. Products that gemm()
// runs as a GEMV (a few rows: gemm_runs_gemv), which packs nothing, take gemm() on either backend;
// the weights are prepared for oneDNN at the first larger one.
template <class T>
class RecurrentWeights {
 public:
  RecurrentWeights(Trans trans_w, int64_t K, int64_t N, const T* W, int64_t ldw, int64_t lda, int64_t ldc,
                   bool accumulate);
  ~RecurrentWeights();
  RecurrentWeights(const RecurrentWeights&) = delete;
  RecurrentWeights& operator=(const RecurrentWeights&) = delete;

  // C[M, N] = A[M, K] @ op(W) (+ C when accumulating); M == 0 does nothing.
  void multiply(int64_t M, const T* A, T* C) const;

  struct Prepared;  // the oneDNN state (recurrent_weights.cpp)

 private:
  Trans trans_w_;
  int64_t K_, N_, ldw_, lda_, ldc_;
  bool accumulate_;
  const T* W_;
  bool onednn_;                                  // the oneDNN backend applies to this product
  mutable bool tried_ = false;                   // preparation was tried (at the first large step)
  mutable std::unique_ptr<Prepared> prepared_;   // null: gemm()
};

}  // namespace s2s
