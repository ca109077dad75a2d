// Writing a GGUF file, or a gguf-split set of them when asked, through one
// streaming interface (GgufWriter's): keys, tensor declarations, begin(),
// tensor data in order, finish().
//
// A set is what llama.cpp's llama-gguf-split writes and llama.cpp loads: the
// output path's PREFIX.gguf becomes PREFIX-00001-of-0000N.gguf ...; the first
// shard holds every key plus split.no = 0, split.count = N,
// split.tensors.count = T; the others only the split keys and their tensors.
// A new shard starts when the current one holds --split-max-tensors tensors,
// or when the next tensor would take it past --split-max-size (a shard holds
// at least one tensor). Each shard is written to a temporary file and renamed
// when complete. A policy that yields one shard writes the plain path.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gguf/gguf_writer.h"

namespace moe {

struct SplitOptions {
  int64_t max_tensors = 0;   // --split-max-tensors N (0: no limit)
  uint64_t max_bytes = 0;    // --split-max-size N(M|G) (0: no limit)
  bool active() const { return max_tensors > 0 || max_bytes > 0; }
};

// "500M", "2G", "1000000": bytes, as llama-gguf-split's --split-max-size.
uint64_t parse_split_size(const std::string& text);

class GgufSetWriter {
 public:
  explicit GgufSetWriter(std::string path, SplitOptions split = {}, uint32_t alignment = 32);
  ~GgufSetWriter();
  GgufSetWriter(const GgufSetWriter&) = delete;
  GgufSetWriter& operator=(const GgufSetWriter&) = delete;

  void set(const std::string& key, GgufValue value);
  void remove(const std::string& key);
  size_t add_tensor(const std::string& name, GgmlType type, const std::vector<int64_t>& shape);
  size_t n_tensors() const { return tensors_.size(); }
  uint64_t tensor_nbytes(size_t i) const { return tensors_.at(i).nbytes; }

  // Decides the shards and writes the first header.
  void begin();
  void write_tensor_data(const void* data, size_t size);
  void write_tensor_part(const void* data, size_t size);
  void finish();

  // The files (known after begin()): one, or the shards in order.
  const std::vector<std::string>& paths() const { return paths_; }

 private:
  struct Decl {
    std::string name;
    GgmlType type;
    std::vector<int64_t> shape;
    uint64_t nbytes;
    int shard = 0;
  };
  void open_shard(int s);
  void advance_to(size_t tensor);  // opens the shard of `tensor`, finishing earlier ones

  std::string path_;
  SplitOptions split_;
  uint32_t alignment_;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<Decl> tensors_;
  std::vector<std::string> paths_;
  int n_shards_ = 1;
  int cur_shard_ = -1;
  std::unique_ptr<GgufWriter> cur_;
  size_t next_ = 0;            // tensor being written
  uint64_t cur_written_ = 0;   // bytes of it written
  bool begun_ = false;
};

}  // namespace moe
