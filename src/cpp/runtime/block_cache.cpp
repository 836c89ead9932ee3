#include "runtime/block_cache.h"

#include <cstdlib>
#include <limits>
#include <map>
#include <mutex>
#include <new>

namespace s2s {

namespace {

struct Cache {
  std::mutex mutex;
  std::multimap<std::size_t, void*> free_blocks;  // capacity -> block
  std::size_t held = 0;
  std::size_t limit = std::size_t(256) << 20;
};

Cache& cache() {
  static Cache* instance = new Cache();  // leaked: arrays may die after static destruction
  return *instance;
}

// The size class of a request: rounded up to a multiple of 1/8 of its power of two (and of 64).
std::size_t size_class(std::size_t bytes) {
  if (bytes > (std::numeric_limits<std::size_t>::max() >> 2)) throw std::bad_alloc();
  std::size_t power = 64;
  while (power < bytes) power <<= 1;
  const std::size_t step = power >= 512 ? power / 8 : 64;
  return (bytes + step - 1) / step * step;
}

}  // namespace

Block acquire_block(std::size_t bytes) {
  const std::size_t capacity = size_class(bytes == 0 ? 1 : bytes);
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    auto it = c.free_blocks.find(capacity);
    if (it != c.free_blocks.end()) {
      void* data = it->second;
      c.free_blocks.erase(it);
      c.held -= capacity;
      return {data, capacity};
    }
  }
  void* data = std::aligned_alloc(64, capacity);
  if (!data) throw std::bad_alloc();
  return {data, capacity};
}

void release_block(Block block) {
  if (!block.data) return;
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    if (c.held + block.capacity <= c.limit) {
      c.free_blocks.emplace(block.capacity, block.data);
      c.held += block.capacity;
      return;
    }
  }
  std::free(block.data);
}

std::size_t block_cache_bytes() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  return c.held;
}

void set_block_cache_limit(std::size_t limit_bytes) {
  Cache& c = cache();
  std::multimap<std::size_t, void*> dropped;
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    c.limit = limit_bytes;
    // keep the smallest blocks that fit under the new limit, free the rest
    std::size_t kept = 0;
    for (auto it = c.free_blocks.begin(); it != c.free_blocks.end();) {
      if (kept + it->first <= limit_bytes) {
        kept += it->first;
        ++it;
      } else {
        dropped.emplace(it->first, it->second);
        it = c.free_blocks.erase(it);
      }
    }
    c.held = kept;
  }
  for (auto& entry : dropped) std::free(entry.second);
}

}  // namespace s2s
