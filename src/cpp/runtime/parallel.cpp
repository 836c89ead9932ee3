// The thread pool behind parallel_ranges (see parallel.h).
#include "runtime/parallel.h"

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#endif

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <pthread.h>
#include <thread>
#include <vector>
#include <system_error>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define S2S_CPU_RELAX() _mm_pause()
#else
#define S2S_CPU_RELAX() ((void)0)
#endif

namespace s2s {
namespace {

int initial_threads() {
  const unsigned hw = std::thread::hardware_concurrency();
  const int cpus = hw < 1 ? 1 : hw > static_cast<unsigned>(kMaxThreads) ? kMaxThreads : static_cast<int>(hw);
  const char* env = std::getenv("S2SEXT_NUM_THREADS");
  if (!env || !*env) return cpus;
  // The whole string, digits only (atoi read "8x" as 8 and wrapped 99999999999 to 1215752191);
  // the value is compared while it is read, so no length of digits can overflow.
  long long n = 0;
  bool ok = true;
  for (const char* p = env; *p && ok; ++p) {
    ok = *p >= '0' && *p <= '9';
    n = n * 10 + (*p - '0');
    ok = ok && n <= kMaxThreads;
  }
  if (ok && n >= 1) return static_cast<int>(n);
  std::fprintf(stderr, "s2sext: ignoring S2SEXT_NUM_THREADS='%s': expected an integer from 1 to %d; using %d (the "
               "number of CPUs)\n", env, kMaxThreads, cpus);
  return cpus;
}

std::atomic<int>& thread_setting() {
  static std::atomic<int> setting{initial_threads()};
  return setting;
}

thread_local bool t_in_region = false;

struct RegionGuard {
  bool outer;
  RegionGuard() : outer(!t_in_region) { t_in_region = true; }
  ~RegionGuard() {
    if (outer) t_in_region = false;
  }
};

// Spin this many pause instructions before a worker sleeps: a job that follows soon (the next
// kernel of the same step) finds the workers awake, and an idle pool soon gives the cores back.
constexpr int kSpinRounds = 2000;

// One job at a time. Protocol: the caller fills the job's fields, then under mutex_ opens the job
// and bumps the generation. A worker joins a job only under mutex_, only while it is open, and
// counts itself in active_. The caller, once every range is done, closes the job under mutex_ and
// waits for active_ to reach zero before it returns, so no worker ever reads a job's fields while
// the next job is being set up.
//
// The pool lives as long as the process and its workers are detached: nothing is joined at exit
// (a worker may be asleep in wait()), and a child made by fork(), which has none of the workers,
// never uses the pool (runs everything on the calling thread).
class Pool {
 public:
  // need_all_threads: every range must get its own thread (a team that meets at barriers).
  bool run(int64_t ranges, const std::function<void(int64_t)>& body, bool need_all_threads) {
    if (forked_child().load(std::memory_order_relaxed)) return false;
    std::unique_lock<std::mutex> busy(job_lock_);  // another caller's job finishes first
    if (!ensure_workers(ranges - 1)) return false;
    if (need_all_threads && workers_ < ranges - 1) return false;
    body_ = &body;
    ranges_ = ranges;
    csr_ = read_csr();  // workers run the job in the caller's floating-point mode
    errors_.assign(ranges, nullptr);
    next_.store(0, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> hold(mutex_);
      open_ = true;
      generation_atomic_.store(++generation_, std::memory_order_release);
    }
    wake_.notify_all();
    {
      RegionGuard region;
      work();  // the caller takes ranges too
    }
    while (done_.load(std::memory_order_acquire) < ranges) S2S_CPU_RELAX();
    {
      std::lock_guard<std::mutex> hold(mutex_);
      open_ = false;
    }
    while (active_.load(std::memory_order_acquire) > 0) S2S_CPU_RELAX();
    body_ = nullptr;
    for (const std::exception_ptr& e : errors_)
      if (e) std::rethrow_exception(e);
    return true;
  }

 private:
  static std::atomic<bool>& forked_child() {
    static std::atomic<bool> flag{false};
    return flag;
  }

  bool ensure_workers(int64_t wanted) {
    static const bool registered = (pthread_atfork(nullptr, nullptr, [] { forked_child().store(true); }), true);
    (void)registered;
    try {
      while (workers_ < wanted) {
        std::thread([this] { worker_loop(); }).detach();
        ++workers_;
      }
    } catch (const std::system_error&) {
      return workers_ > 0;  // could not start another thread: use what there is
    }
    return true;
  }

  // Takes ranges of the open job until none is left.
  void work() {
    for (int64_t r = next_.fetch_add(1, std::memory_order_relaxed); r < ranges_;
         r = next_.fetch_add(1, std::memory_order_relaxed)) {
      try {
        (*body_)(r);
      } catch (...) {
        errors_[r] = std::current_exception();
      }
      done_.fetch_add(1, std::memory_order_acq_rel);
    }
  }

  void worker_loop() {
    t_in_region = true;  // work started here is never split again
    uint64_t seen = 0;
    for (;;) {
      // Spin a while for the next job, then sleep until one is posted.
      for (int spins = 0; spins < kSpinRounds && generation_atomic_.load(std::memory_order_acquire) == seen; ++spins)
        S2S_CPU_RELAX();
      {
        std::unique_lock<std::mutex> hold(mutex_);
        wake_.wait(hold, [&] { return generation_ != seen; });
        seen = generation_;
        if (!open_) continue;  // that job has finished already
        active_.fetch_add(1, std::memory_order_acq_rel);
      }
      const unsigned int own = read_csr();
      write_csr(csr_);
      work();
      write_csr(own);
      active_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }

  // The SSE control register (flush-to-zero, denormals-are-zero, rounding) of x86; elsewhere a no-op.
  static unsigned int read_csr() {
#if defined(__SSE__) || defined(__x86_64__)
    return _mm_getcsr();
#else
    return 0;
#endif
  }
  static void write_csr(unsigned int csr) {
#if defined(__SSE__) || defined(__x86_64__)
    _mm_setcsr(csr);
#else
    (void)csr;
#endif
  }

  std::mutex job_lock_;  // held by the caller whose job runs
  unsigned int csr_ = 0;
  int64_t workers_ = 0;
  const std::function<void(int64_t)>* body_ = nullptr;
  int64_t ranges_ = 0;
  std::vector<std::exception_ptr> errors_;
  std::atomic<int64_t> next_{0}, done_{0}, active_{0};
  std::mutex mutex_;  // guards generation_ and open_
  std::condition_variable wake_;
  uint64_t generation_ = 0;
  std::atomic<uint64_t> generation_atomic_{0};  // generation_, readable without the lock for spinning
  bool open_ = false;
};

Pool& pool() {
  static Pool* instance = new Pool;  // never destroyed, see Pool
  return *instance;
}

}  // namespace

int num_threads() { return thread_setting().load(std::memory_order_relaxed); }

void set_num_threads(int threads) {
  thread_setting().store(threads < 1 ? 1 : threads > kMaxThreads ? kMaxThreads : threads, std::memory_order_relaxed);
}

bool in_parallel_region() { return t_in_region; }

SerialScope::SerialScope() : outer_(!t_in_region) { t_in_region = true; }
SerialScope::~SerialScope() {
  if (outer_) t_in_region = false;
}

bool detail::run_on_pool(int64_t ranges, const std::function<void(int64_t)>& body, bool need_all_threads) {
  return pool().run(ranges, body, need_all_threads);
}

void TeamBarrier::wait() {
  const int64_t phase = phase_.load(std::memory_order_acquire);
  if (arrived_.fetch_add(1, std::memory_order_acq_rel) + 1 == members_) {
    arrived_.store(0, std::memory_order_relaxed);
    phase_.fetch_add(1, std::memory_order_release);
    return;
  }
  for (int spins = 0; phase_.load(std::memory_order_acquire) == phase; ++spins) {
    if (aborted_.load(std::memory_order_relaxed)) throw TeamAborted();
    if (spins < kSpinRounds) S2S_CPU_RELAX();
    else std::this_thread::yield();  // a member has lost its core: do not burn the one it needs
  }
}

bool run_team(int64_t size, const std::function<void(int64_t, TeamBarrier&)>& body) {
  if (size < 2 || in_parallel_region()) return false;
  TeamBarrier barrier(size);
  // Each member runs exactly one rank: it cannot finish its rank, and so cannot take another,
  // before every member has reached the first barrier.
  return detail::run_on_pool(
      size,
      [&](int64_t rank) {
        try {
          body(rank, barrier);
        } catch (const TeamAborted&) {
          // another member failed; its exception is the one reported
        } catch (...) {
          barrier.abort();
          throw;
        }
      },
      /*need_all_threads=*/true);
}

}  // namespace s2s
