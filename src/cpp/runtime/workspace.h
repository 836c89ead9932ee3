// Scratch memory for one thread, kept between calls.
//
// A backward pass needs scratch as large as its saved activations (an LSTM's dgates is S*B*4H
// floats). Fresh memory costs a page fault per 4 KiB page, which on a virtual machine costs more
// than the arithmetic the buffer serves, so each thread keeps its scratch and reuses it: it only
// grows, and is freed when the thread ends. The contents are uninitialised on every call. No
// state is shared between threads.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>

namespace s2s {

// Named slots, so buffers used at the same time never alias.
enum class Scratch {
  lstm_dgates,
  lstm_dx_tm,
  lstm_dhx,
  lstm_w_cat,
  lstm_dw_cat,
  lstm_dh_partials,
  attention_de,
  attention_dquery,
  attention_dkey,
  gemm_partials,
  lstm_inference_input,  // lstm_sequence_inference: the input product of every step
  lstm_inference_state,  // lstm_sequence_inference: the running state
  count
};

// A buffer of at least n elements of T, 64-byte aligned, valid until this thread asks for the same
// slot again.
template <class T>
T* scratch(Scratch slot, int64_t n);

}  // namespace s2s
