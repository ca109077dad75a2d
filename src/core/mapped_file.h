// A read-only memory mapping of a whole file. Weights are used straight from
// this mapping (zero copy); the page cache is the only copy in RAM.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace moe {

class MappedFile {
 public:
  // Throws moe::Error naming the path and the system's reason.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace moe
