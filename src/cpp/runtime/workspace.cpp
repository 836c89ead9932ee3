#include "runtime/workspace.h"

#include <cstdlib>
#include <new>

namespace s2s {
namespace {

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

struct Slot {
  std::unique_ptr<void, FreeDeleter> data;
  size_t bytes = 0;
};

void* slot_bytes(Scratch which, size_t bytes) {
  thread_local Slot slots[static_cast<int>(Scratch::count)];
  Slot& slot = slots[static_cast<int>(which)];
  if (bytes > slot.bytes) {
    const size_t rounded = (bytes + 63) / 64 * 64;
    slot.data.reset();  // release first: peak memory stays at one copy
    slot.bytes = 0;
    void* p = std::aligned_alloc(64, rounded);
    if (!p) throw std::bad_alloc();
    slot.data.reset(p);
    slot.bytes = rounded;
  }
  return slot.data.get();
}

}  // namespace

template <class T>
T* scratch(Scratch slot, int64_t n) {
  return static_cast<T*>(slot_bytes(slot, sizeof(T) * static_cast<size_t>(n > 0 ? n : 1)));
}

template float* scratch<float>(Scratch, int64_t);
template double* scratch<double>(Scratch, int64_t);
template int64_t* scratch<int64_t>(Scratch, int64_t);

}  // namespace s2s
