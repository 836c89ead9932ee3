// A cache of large freed memory blocks, reused by later requests of the same size class.
//
// Training allocates the same large buffers every step (an LSTM's saved gates are S*B*4H floats).
// Fresh memory from the system costs a page fault per 4 KiB page on first touch, a visible share of
// a training step on a virtual machine; blocks kept here are already mapped. Sizes are rounded
// up to classes 1/8 of a power of two apart (at most 12.5% slack), a request takes a cached block
// of exactly its class, and the cache keeps at most limit_bytes (default 256 MiB) of free blocks:
// beyond that a released block goes back to the system.
#pragma once
#include <cstddef>

namespace s2s {

struct Block {
  void* data;
  std::size_t capacity;  // the size class; pass it back to release_block
};

// Blocks of at least this many bytes go through the cache; smaller ones through malloc directly.
constexpr std::size_t kBlockCacheMinBytes = std::size_t(256) << 10;

// 64-byte aligned memory of at least `bytes`; throws std::bad_alloc when none is left.
Block acquire_block(std::size_t bytes);
void release_block(Block block);

// Free blocks held (bytes) and the limit; set_block_cache_limit(0) empties and disables the cache.
std::size_t block_cache_bytes();
void set_block_cache_limit(std::size_t limit_bytes);

}  // namespace s2s
