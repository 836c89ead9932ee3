#include "parallel.h"

#include <atomic>
#include <cstdlib>

namespace s2s {
namespace {

int initial_threads() {
  if (const char* env = std::getenv("S2SEXT_NUM_THREADS")) {
    const int n = std::atoi(env);
    if (n >= 1) return n;
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw >= 1 ? static_cast<int>(hw) : 1;
}

std::atomic<int>& thread_setting() {
  static std::atomic<int> setting{initial_threads()};
  return setting;
}

thread_local bool t_in_region = false;

}  // namespace

int num_threads() { return thread_setting().load(std::memory_order_relaxed); }

void set_num_threads(int threads) { thread_setting().store(threads >= 1 ? threads : 1, std::memory_order_relaxed); }

bool in_parallel_region() { return t_in_region; }

detail::ParallelRegion::ParallelRegion() : outer(!t_in_region) { t_in_region = true; }
detail::ParallelRegion::~ParallelRegion() {
  if (outer) t_in_region = false;
}

}  // namespace s2s
