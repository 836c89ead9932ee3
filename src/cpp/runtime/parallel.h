// s2sext's own threading.
//
// The bundled OpenBLAS runs single-threaded; the core splits work across threads itself. A large
// LSTM runs as a team (run_team) that meets twice per step, each member packing only its share of
// the step's weights; in a small one the batch rows are independent through all S steps, so each
// thread runs the whole recurrence for its chunk of rows and the threads meet once. Large single products
// are split by gemm() (blas.cpp) over the rows or columns of their output (weight gradients over
// their inner dimension), and batch-1 GEMVs over their rows.
//
// The threads are a small pool started on first use (num_threads() - 1 workers; the calling thread
// takes a share). After a job a worker spins briefly before sleeping, so that back-to-back calls
// (a decoder's steps) do not pay a wake-up each. One job runs at a time: a call that finds the
// pool busy (another Python thread is using it) waits for it, so a result is computed the same way
// whoever else is calling. Workers never start jobs, so waiting cannot deadlock.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>

namespace s2s {

// The most threads s2sext runs (set_num_threads and S2SEXT_NUM_THREADS): far above any core count
// it was measured on, small enough that an absurd request cannot exhaust the process.
constexpr int kMaxThreads = 1024;

// Threads a call may use: S2SEXT_NUM_THREADS when it is a decimal integer from 1 to kMaxThreads
// (nothing but digits), else the number of CPUs (capped at kMaxThreads). A value set but not of
// that form is reported once on stderr and ignored; an empty one counts as unset.
int num_threads();
// threads is clamped to [1, kMaxThreads] (the Python binding refuses values outside it).
void set_num_threads(int threads);

// True on a pool worker, or on a caller while it runs its share of a job: work there is not split
// again.
bool in_parallel_region();

// While one lives, work on this thread is not split (it runs as if inside a parallel region): a
// caller that runs many independent calls on its own threads (a server's decodes) uses one per
// call, so that its threads do not queue for the shared pool.
class SerialScope {
 public:
  SerialScope();
  ~SerialScope();
  SerialScope(const SerialScope&) = delete;
  SerialScope& operator=(const SerialScope&) = delete;

 private:
  bool outer_;
};

namespace detail {
// Runs body(r) for r in [0, ranges) on the pool and the calling thread; false (nothing run) if the
// pool cannot run it (a forked child, no thread could be started). Exceptions from body are
// rethrown (the first one).
bool run_on_pool(int64_t ranges, const std::function<void(int64_t)>& body, bool need_all_threads = false);
}  // namespace detail

// A barrier for a team (run_team): every member's wait() returns once all have called it. If a
// member fails, the others' wait() throws TeamAborted instead of waiting for ever.
struct TeamAborted {};
class TeamBarrier {
 public:
  explicit TeamBarrier(int64_t members) : members_(members) {}
  void wait();
  void abort() { aborted_.store(true, std::memory_order_relaxed); }

 private:
  const int64_t members_;
  std::atomic<int64_t> arrived_{0};
  std::atomic<int64_t> phase_{0};
  std::atomic<bool> aborted_{false};
};

// Runs body(rank, barrier) for rank in [0, size) on `size` threads at the same time (the caller is
// one), for work whose threads must meet several times (barrier.wait()). Returns false, having run
// nothing, when that many threads cannot be had (fewer threads could be started, a forked child),
// so the caller takes another route. Exceptions are rethrown (the first one).
bool run_team(int64_t size, const std::function<void(int64_t rank, TeamBarrier& barrier)>& body);

// Splits [0, n) into at most num_threads() contiguous ranges of at least min_per_range elements
// and runs fn(begin, end) on each. Runs inline when one range suffices or inside a parallel region.
template <class F>
void parallel_ranges(int64_t n, int64_t min_per_range, F&& fn) {
  int64_t ranges = min_per_range > 0 ? n / min_per_range : n;
  if (ranges > num_threads()) ranges = num_threads();
  if (ranges > 1 && !in_parallel_region() &&
      detail::run_on_pool(ranges, [&](int64_t r) { fn(n * r / ranges, n * (r + 1) / ranges); }))
    return;
  if (n > 0) fn(int64_t(0), n);
}

}  // namespace s2s
