// safetensors reader, zero-copy over an mmap of the file, and Hugging Face
// checkpoints made of one or more safetensors shards (converter input).
//
// File layout:
//   u64 N (little-endian) | N bytes of UTF-8 JSON header | data buffer
// The header is one JSON object:
//   {"__metadata__": {"key": "string value", ...},          (optional)
//    "NAME": {"dtype": "F32", "shape": [rows, cols], "data_offsets": [begin, end]}, ...}
// with offsets relative to the start of the data buffer and shape in row-major
// (PyTorch / Hugging Face) order: shape[0] is the outermost dimension.
//
// Everything is validated before it is used, as the reference implementation
// (huggingface/safetensors) requires: N against the file size and a 100 MB
// cap, JSON syntax and nesting depth, duplicate keys at any level, each
// entry's fields and their types, known dtype, dimensions non-negative with
// an overflow-checked product, data_offsets inside the buffer with
// end - begin == product(shape) * dtype size, and the tensors tiling the
// buffer exactly: no overlaps, no holes, no trailing bytes. Errors are
// moe::Error naming the file, the tensor and what was expected vs found.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace moe {

class MappedFile;

// F8_E8M0: a power of two 2^(b - 127) per byte (0xFF NaN), DeepSeek-V4's block scales.
enum class SafetensorsDtype : uint8_t { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL, F8_E4M3, F8_E5M2, F8_E8M0 };

const char* safetensors_dtype_name(SafetensorsDtype t);  // "F8_E4M3"
uint64_t safetensors_dtype_size(SafetensorsDtype t);     // bytes per element
std::optional<SafetensorsDtype> safetensors_dtype_from_name(std::string_view name);

struct SafetensorInfo {
  std::string name;
  SafetensorsDtype dtype = SafetensorsDtype::F32;
  std::vector<int64_t> shape;     // row-major, HF order: shape[0] outermost
  int64_t n_elements = 0;         // product of shape (1 for a scalar, shape [])
  uint64_t offset = 0;            // relative to the start of the data buffer
  uint64_t nbytes = 0;
  const uint8_t* data = nullptr;  // into the mapping; not aligned in general
  std::string file;               // the file it came from, for errors

  std::string shape_string() const;  // "[128, 256]"
};

class SafetensorsFile {
 public:
  static constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // as huggingface/safetensors

  // Maps and parses a file. Throws moe::Error.
  static SafetensorsFile open(const std::string& path);
  // Parses bytes already in memory (tests, fuzzing); `name` is used in
  // errors. The bytes must outlive the returned object.
  static SafetensorsFile parse(const uint8_t* data, size_t size, const std::string& name = "<memory>");

  const std::string& path() const { return path_; }
  // In data-buffer order (which is the order the tensors lie in the file).
  const std::vector<SafetensorInfo>& tensors() const { return tensors_; }
  const SafetensorInfo* find(std::string_view name) const;  // nullptr if absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  uint64_t header_bytes() const { return header_bytes_; }  // N

 private:
  SafetensorsFile() = default;
  std::shared_ptr<const MappedFile> mapping_;  // null when parsing caller-owned memory
  std::string path_;
  uint64_t header_bytes_ = 0;
  std::vector<SafetensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
  std::map<std::string, std::string> metadata_;
};

// A Hugging Face checkpoint directory: either model.safetensors, or
// model.safetensors.index.json whose "weight_map" maps every tensor name to
// its shard file. The index and the shards must agree exactly: every shard
// present, every listed tensor in its shard, no tensor in two shards and no
// tensor in a shard that the index does not list.
class SafetensorsCheckpoint {
 public:
  static SafetensorsCheckpoint open(const std::string& dir);
  // Move-only: the name index points into the shards.
  SafetensorsCheckpoint(SafetensorsCheckpoint&&) = default;
  SafetensorsCheckpoint& operator=(SafetensorsCheckpoint&&) = default;
  SafetensorsCheckpoint(const SafetensorsCheckpoint&) = delete;
  SafetensorsCheckpoint& operator=(const SafetensorsCheckpoint&) = delete;

  const std::string& dir() const { return dir_; }
  // Index order (weight_map order), or file order for a single file.
  const std::vector<std::string>& names() const { return names_; }
  const SafetensorInfo* find(std::string_view name) const;  // nullptr if absent
  const SafetensorInfo& tensor(std::string_view name) const;  // throws naming the checkpoint
  // `name`_scale_inv (DeepSeek's FP8 block scales), or nullptr.
  const SafetensorInfo* find_scale_inv(std::string_view name) const;
  const std::vector<SafetensorsFile>& shards() const { return shards_; }
  // The index's "metadata" (e.g. total_size) as JSON text per key; empty for a single file.
  const std::map<std::string, std::string>& index_metadata() const { return index_metadata_; }

 private:
  SafetensorsCheckpoint() = default;
  std::string dir_;
  std::vector<SafetensorsFile> shards_;
  std::vector<std::string> names_;
  std::map<std::string, const SafetensorInfo*, std::less<>> by_name_;
  std::map<std::string, std::string> index_metadata_;
};

// One tensor as float32, row-major in the tensor's own order. Supports F32,
// F16, BF16, F8_E4M3 and F8_E5M2. An FP8 tensor needs `scale_inv` (DeepSeek's
// block scales: a 2-D F32/BF16/F16 tensor (V3's `_scale_inv`) or F8_E8M0
// (V4's `.scale`) of shape
// [ceil(rows/block_rows), ceil(cols/block_cols)] for a weight [rows, cols]);
// each value is fp8_to_f32(q) * scale_inv[r/block_rows][c/block_cols], one
// float32 multiply, as DeepSeek's weight_dequant_kernel (inference/kernel.py:
// `x.to(tl.float32) * s`; its fp8_cast_bf16.py then stores the product as
// bf16) and llama.cpp's convert_hf_to_gguf.py (`weight.float() * scale`) do.
// Throws moe::Error naming the tensor on any other dtype or a scale of the
// wrong shape.
std::vector<float> tensor_to_f32(const SafetensorInfo& t, const SafetensorInfo* scale_inv = nullptr,
                                 int64_t block_rows = 128, int64_t block_cols = 128);

}  // namespace moe
