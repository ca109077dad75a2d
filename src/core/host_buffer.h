// Memory the process owns for weights: 2 MiB-aligned with transparent huge
// pages asked for (generation streams ~1 GiB of weights per token through
// the TLB; one entry per 2 MiB instead of 512). The file read into memory
// (--no-mmap) and the experts repacked at load live in these.
#pragma once

#include <cstddef>
#include <cstdint>

namespace moe {

class HostBuffer {
 public:
  HostBuffer() = default;
  // Null data when the bytes are not available (the caller names what).
  explicit HostBuffer(size_t bytes);
  ~HostBuffer();
  HostBuffer(HostBuffer&& o) noexcept : data_(o.data_), size_(o.size_) { o.data_ = nullptr, o.size_ = 0; }
  HostBuffer& operator=(HostBuffer&& o) noexcept;
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

  // Gives the whole pages inside [p, p + n) of this buffer back to the
  // system: bytes nothing will read again (a tensor repacked elsewhere). They
  // read as zeros afterwards.
  void release(const uint8_t* p, size_t n) const;

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace moe
