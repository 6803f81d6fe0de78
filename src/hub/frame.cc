#include "hub/frame.h"

#include <cstdlib>
#include <new>

namespace cable::hub {

static_assert(sizeof(Frame) <= 64, "Frame header must fit the first cache line");

Frame* Frame::NewLocal(size_t size) {
  void* mem = std::malloc(64 + size);
  if (!mem) throw std::bad_alloc();
  Frame* f = new (mem) Frame();
  f->local_refs_ = 1;
  f->size_ = static_cast<uint32_t>(size);
  f->data_offset_ = 64;
  return f;
}

Frame* Frame::NewShared(size_t size, int workers) {
  size_t offset = 64 + sizeof(LocalCount) * static_cast<size_t>(workers);
  void* mem = std::aligned_alloc(64, ((offset + size + 63) / 64) * 64);
  if (!mem) throw std::bad_alloc();
  Frame* f = new (mem) Frame();
  f->workers_ = static_cast<uint16_t>(workers);
  f->size_ = static_cast<uint32_t>(size);
  f->data_offset_ = static_cast<uint32_t>(offset);
  f->shared_refs_.store(1, std::memory_order_relaxed);
  for (int i = 0; i < workers; ++i) f->locals()[i].count = 0;
  return f;
}

void Frame::Acquire(int worker) {
  if (!workers_) {
    ++local_refs_;
    return;
  }
  if (locals()[worker].count++ == 0) shared_refs_.fetch_add(1, std::memory_order_relaxed);
}

void Frame::Release(int worker) {
  if (!workers_) {
    if (--local_refs_ == 0) Free();
    return;
  }
  if (--locals()[worker].count == 0) ReleaseCreator();
}

void Frame::ReleaseCreator() {
  if (!workers_) {
    if (--local_refs_ == 0) Free();
    return;
  }
  if (shared_refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) Free();
}

void Frame::Free() {
  if (free_hook) free_hook(this);
  this->~Frame();
  std::free(this);
}

}  // namespace cable::hub
