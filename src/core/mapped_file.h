// A read-only memory mapping of a whole file. Weights are used straight from
// this mapping (zero copy); the page cache is the only copy in RAM.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "core/host_buffer.h"

namespace moe {

class MappedFile {
 public:
  // Throws moe::Error naming the path and the system's reason. With
  // map = false the file is read into memory this object owns instead
  // (llama.cpp's --no-mmap: no page faults later, no sharing with the page
  // cache's copy either).
  explicit MappedFile(const std::string& path, bool map = true);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  bool mapped() const { return mapped_; }

  bool contains(const uint8_t* p) const { return p >= data_ && p < data_ + size_; }
  // Bytes of the copy read into memory that nothing reads any more (a tensor
  // repacked elsewhere at load) go back to the system; a mapping keeps them
  // (the page cache's pages are shared and reclaimable).
  void release(const uint8_t* p, size_t n) const;

  // Locks the pages in RAM (--mlock). Returns "" or the system's reason.
  std::string lock() const;

  // Reads one byte of every page of [data, data + size) so the page cache
  // holds it before the first forward pass touches it (a mapping is read
  // from disk on first use, which for a large model would happen in the
  // first token with no feedback). progress(bytes) is called every 64 MiB.
  static void prefetch(const uint8_t* data, size_t size, const std::function<void(uint64_t)>& progress);

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = true;
  HostBuffer owned_;  // the file's bytes when read (map = false)
};

}  // namespace moe
