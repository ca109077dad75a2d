// GGUF reader (versions 2 and 3), zero-copy over an mmap of the file.
//
// File layout (all little-endian):
//   u32 magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
//   n_kv x  { string key | u32 value_type | value }
//   n_tensors x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
//   padding to `general.alignment` (default 32)
//   tensor data: each tensor at data_start + offset, offset % alignment == 0
// where string = u64 length + bytes (no terminator), and an array value is
// u32 element_type | u64 count | elements.
//
// Everything is validated before it is used: counts and lengths against the
// bytes left in the file (so a hostile count can never cause a huge
// allocation), dimension products against overflow, tensor data inside the
// file, aligned and not overlapping, known value and tensor types, unique
// keys and names. Errors are moe::GgufError whose message names the file,
// the byte offset and the field.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "core/ggml_type.h"
#include "gguf/gguf_value.h"

namespace moe {

class MappedFile;

class GgufError : public Error {
 public:
  explicit GgufError(const std::string& what) : Error(what) {}
};

inline constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as little-endian u32
inline constexpr uint32_t kGgufDefaultAlignment = 32;
inline constexpr int kGgufMaxDims = 4;

struct GgufTensorInfo {
  std::string name;
  GgmlType type = GgmlType::F32;
  std::vector<int64_t> shape;  // ggml order: shape[0] is the contiguous (row) dimension
  uint64_t offset = 0;         // relative to the start of the data section
  uint64_t nbytes = 0;
  int64_t n_elements = 0;
  const uint8_t* data = nullptr;  // into the mapping
  uint32_t shard = 0;             // the file of a gguf-split set it lives in (0: the first)

  int64_t ne(int i) const { return i < static_cast<int>(shape.size()) ? shape[i] : 1; }
  // The product of the dimensions after the first; not n_elements / shape[0],
  // which divides by zero for a tensor with empty rows (shape[0] == 0). The
  // reader has checked that the non-zero dimensions' product fits in int64.
  int64_t n_rows() const {
    int64_t r = 1;
    for (size_t i = 1; i < shape.size(); ++i) r *= shape[i];
    return r;
  }
  std::string shape_string() const;  // "[256, 2060]"
};

// One file of a gguf-split set (a whole file is a set of one).
struct GgufShard {
  std::string path;
  const uint8_t* data = nullptr;
  uint64_t size = 0;
  uint64_t data_offset = 0;
  size_t n_tensors = 0;
};

struct GgufKv {
  std::string key;
  GgufValue value;
};

// The name of shard `no` (1-based) of `count`: PREFIX-%05d-of-%05d.gguf.
std::string gguf_split_path(const std::string& prefix, int no, int count);

class GgufFile {
 public:
  // Maps and parses a file (reads it into memory with map = false). Throws
  // GgufError (bad content) or moe::Error (I/O).
  //
  // The first file of a gguf-split set (keys split.no = 0, split.count,
  // split.tensors.count) opens the whole set, as llama.cpp does: the other
  // shards are PREFIX-%05d-of-%05d.gguf beside it, each mapped; metadata
  // comes from the first, tensors from all. A missing, foreign (another
  // set's) or truncated shard, or a later shard given first, is an error
  // naming the file. With whole_set = false a shard is opened alone (an
  // inspector describing one file).
  static GgufFile open(const std::string& path, bool map = true, bool whole_set = true);
  // Parses bytes already in memory (tests, fuzzing). `name` is used in errors.
  // The bytes must outlive the returned object.
  static GgufFile parse(const uint8_t* data, size_t size, const std::string& name = "<memory>");

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // start of the tensor data section
  uint64_t file_size() const { return size_; }
  const uint8_t* file_data() const { return base_; }
  // The file's memory (null when parsing caller-owned memory).
  const MappedFile* mapping() const { return mapping_.get(); }
  // The files of the set, first one first (one entry for a plain file).
  const std::vector<GgufShard>& shards() const { return shards_; }
  uint64_t total_size() const;  // bytes of every shard
  // Every shard's memory (prefetch, mlock).
  std::vector<const MappedFile*> mappings() const;

  // ---- metadata ----------------------------------------------------------------
  const std::vector<GgufKv>& metadata() const { return kv_; }  // in file order
  const GgufValue* find(std::string_view key) const;           // nullptr if absent
  bool has(std::string_view key) const { return find(key) != nullptr; }

  // Required forms throw GgufError "file: key 'k' is missing" or "... key 'k':
  // expected uint32, found string"; integer getters accept any integer type
  // whose value fits. Optional forms return nullopt when the key is absent
  // (but still throw on a wrong type).
  uint32_t get_u32(std::string_view key) const;
  int32_t get_i32(std::string_view key) const;
  uint64_t get_u64(std::string_view key) const;
  float get_f32(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  const std::string& get_string(std::string_view key) const;
  const std::vector<std::string>& get_string_array(std::string_view key) const;
  std::vector<float> get_f32_array(std::string_view key) const;
  std::vector<int32_t> get_i32_array(std::string_view key) const;

  std::optional<uint32_t> get_u32_opt(std::string_view key) const;
  std::optional<int32_t> get_i32_opt(std::string_view key) const;
  std::optional<uint64_t> get_u64_opt(std::string_view key) const;
  std::optional<float> get_f32_opt(std::string_view key) const;
  std::optional<bool> get_bool_opt(std::string_view key) const;
  std::optional<std::string> get_string_opt(std::string_view key) const;

  // ---- tensors ----------------------------------------------------------------
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }  // in file order
  const GgufTensorInfo* find_tensor(std::string_view name) const;        // nullptr if absent
  const GgufTensorInfo& tensor(std::string_view name) const;             // throws if absent

 private:
  GgufFile() = default;
  friend class GgufParser;
  const GgufValue& require(std::string_view key) const;
  [[noreturn]] void type_error(std::string_view key, const char* expected, const GgufValue& v) const;

  void open_split_set(bool map);
  bool split_member_ = false;  // a shard of a set opened alone
 public:
  // A later shard of a gguf-split set opened alone (whole_set = false).
  bool is_lone_shard() const { return split_member_; }
 private:

  std::shared_ptr<const MappedFile> mapping_;  // null when parsing caller-owned memory
  std::vector<GgufShard> shards_;
  std::vector<std::shared_ptr<const MappedFile>> shard_mappings_;  // shards after the first
  std::string path_;
  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  uint32_t version_ = 0;
  uint32_t alignment_ = kGgufDefaultAlignment;
  uint64_t data_offset_ = 0;
  std::vector<GgufKv> kv_;
  std::map<std::string, size_t, std::less<>> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

}  // namespace moe
