// GGUF writer (version 3). Streams: the header is written first, then each
// tensor's data in declaration order, so a tool holds one tensor in memory
// at a time. Output goes to a temporary file beside the target, renamed over
// it only by finish(); a writer destroyed before finish() removes the
// temporary file and leaves any existing target untouched.
//
//   GgufWriter w("out.gguf");
//   w.set("general.architecture", GgufValue::string("deepseek2"));
//   w.add_tensor("token_embd.weight", GgmlType::Q8_0, {7168, 129280});
//   w.begin();                        // header + padding
//   w.write_tensor_data(bytes, size); // once per tensor, in order
//   w.finish();                       // flush, fsync, rename
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "core/ggml_type.h"
#include "gguf/gguf_value.h"

namespace moe {

class GgufWriter {
 public:
  explicit GgufWriter(std::string path, uint32_t alignment = 32);
  ~GgufWriter();
  GgufWriter(const GgufWriter&) = delete;
  GgufWriter& operator=(const GgufWriter&) = delete;

  // Sets a key (replacing its value in place if present, else appending).
  // general.alignment, when set, must be a power-of-two uint32 and becomes
  // the alignment used.
  void set(const std::string& key, GgufValue value);
  void remove(const std::string& key);
  const GgufValue* find(const std::string& key) const;

  // Declares a tensor; shape in ggml order (shape[0] contiguous). Checks the
  // row is whole blocks of `type` and names are unique. Returns its index.
  size_t add_tensor(const std::string& name, GgmlType type, const std::vector<int64_t>& shape);
  size_t n_tensors() const { return tensors_.size(); }
  uint64_t tensor_nbytes(size_t i) const { return tensors_.at(i).nbytes; }

  // Opens the temporary file and writes the header. No more keys or tensors after.
  void begin();
  // Appends the data of the next tensor; size must equal its nbytes. May be
  // called in several pieces per tensor (write_tensor_part) for streaming.
  void write_tensor_data(const void* data, size_t size);
  void write_tensor_part(const void* data, size_t size);
  // Checks all data was written, flushes, fsyncs and renames into place.
  void finish();

  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return tmp_path_; }

 private:
  struct TensorDecl {
    std::string name;
    GgmlType type;
    std::vector<int64_t> shape;
    uint64_t offset;
    uint64_t nbytes;
  };
  void write_bytes(const void* p, size_t n);
  void write_padding_to_alignment();
  void abandon() noexcept;

  std::string path_;
  std::string tmp_path_;
  uint32_t alignment_;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<TensorDecl> tensors_;
  std::FILE* f_ = nullptr;
  uint64_t pos_ = 0;             // bytes written so far
  uint64_t data_start_ = 0;
  size_t cur_tensor_ = 0;        // tensor being written
  uint64_t cur_written_ = 0;     // bytes of it written
  bool begun_ = false;
  bool finished_ = false;
};

}  // namespace moe
