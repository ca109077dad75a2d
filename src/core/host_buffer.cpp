#include "core/host_buffer.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "core/error.h"

namespace moe {

namespace {
constexpr size_t kHugePage = size_t{2} << 20;
}

HostBuffer::HostBuffer(size_t bytes) {
  if (bytes == 0) return;
  void* p = nullptr;
  if (::posix_memalign(&p, kHugePage, bytes) != 0) return;
#ifdef MADV_HUGEPAGE
  ::madvise(p, bytes, MADV_HUGEPAGE);  // advice only: failure changes nothing
#endif
  data_ = static_cast<uint8_t*>(p);
  size_ = bytes;
}

HostBuffer::~HostBuffer() { std::free(data_); }

HostBuffer& HostBuffer::operator=(HostBuffer&& o) noexcept {
  if (this != &o) {
    std::free(data_);
    data_ = o.data_, size_ = o.size_;
    o.data_ = nullptr, o.size_ = 0;
  }
  return *this;
}

void HostBuffer::release(const uint8_t* p, size_t n) const {
  MOE_ASSERT(p >= data_ && p + n <= data_ + size_, "release: %zu bytes are not inside this buffer", n);
  const auto page = static_cast<uintptr_t>(std::max(4096L, ::sysconf(_SC_PAGESIZE)));
  const uintptr_t b = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page;
  const uintptr_t e = (reinterpret_cast<uintptr_t>(p) + n) / page * page;
  // A large posix_memalign block is its own anonymous mapping: MADV_DONTNEED
  // frees its pages now, and free() later unmaps the whole block as before.
  if (e > b) ::madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
}

}  // namespace moe
