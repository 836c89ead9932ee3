// s2sext's own threading.
//
// The bundled OpenBLAS runs single-threaded; the core splits work across threads itself. That
// lets independent work proceed without meeting at every step: the batch rows of an LSTM are
// independent through all S steps, so each thread runs the whole recurrence for its chunk of rows
// (its per-step GEMMs included) and the threads meet once, not 2*S times. Large single products
// are split by gemm() (blas.cpp) over the rows or columns of their output.
//
// Threads are started per call and joined before it returns: nothing runs between calls and no
// state is shared between callers, except the thread count, one atomic setting.
#pragma once
#include <cstdint>
#include <exception>
#include <thread>
#include <vector>

namespace s2s {

// Threads a call may use (default: S2SEXT_NUM_THREADS, else the number of CPUs).
int num_threads();
void set_num_threads(int threads);

// True inside a parallel_ranges worker (and its caller's share): work there is not split again.
bool in_parallel_region();

namespace detail {
struct ParallelRegion {  // marks the current thread as inside a parallel region
  ParallelRegion();
  ~ParallelRegion();
  bool outer;
};
}  // namespace detail

// Splits [0, n) into at most num_threads() contiguous ranges of at least min_per_range elements
// and runs fn(begin, end) on each, the calling thread taking the first. Runs inline when one range
// suffices or when already inside a parallel region. The first exception thrown is rethrown.
template <class F>
void parallel_ranges(int64_t n, int64_t min_per_range, F&& fn) {
  int64_t ranges = min_per_range > 0 ? n / min_per_range : n;
  if (ranges > num_threads()) ranges = num_threads();
  if (ranges <= 1 || in_parallel_region()) {
    if (n > 0) fn(int64_t(0), n);
    return;
  }
  std::vector<std::exception_ptr> errors(ranges);
  auto run = [&](int64_t r) {
    detail::ParallelRegion region;
    try {
      fn(n * r / ranges, n * (r + 1) / ranges);
    } catch (...) {
      errors[r] = std::current_exception();
    }
  };
  std::vector<std::thread> workers;
  workers.reserve(ranges - 1);
  for (int64_t r = 1; r < ranges; ++r) workers.emplace_back(run, r);
  run(0);
  for (std::thread& w : workers) w.join();
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace s2s
