// Binding a model's tensors by name from a GGUF file: each shape checked
// against what the model expects (ggml order), each type checked to be one
// the kernels compute with, so a wrong or truncated file fails at load with
// the tensor named. Shared by every architecture's weights.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace moe {

class GgufFile;

// Small tensors converted at load (norm vectors not stored as f32) live in
// buffers the weights own.
using OwnedBuffers = std::vector<std::shared_ptr<std::vector<uint8_t>>>;

class TensorBinder {
 public:
  TensorBinder(const GgufFile& f, OwnedBuffers& owned) : f_(f), owned_(owned) {}

  bool has(const std::string& name) const;
  const std::string& path() const;
  // A tensor of exactly this shape (ggml order), any type the kernels compute with.
  TensorView tensor(const std::string& name, std::initializer_list<int64_t> shape);
  // A tensor of exactly this shape and type (integer tables such as I32).
  TensorView tensor_of_type(const std::string& name, std::initializer_list<int64_t> shape, GgmlType type);
  // A vector as f32: used in place when stored as f32, converted otherwise.
  TensorView vector_f32(const std::string& name, int64_t n);
  // A small tensor as f32 (read element by element on the host): used in
  // place when stored as f32, converted otherwise.
  TensorView tensor_f32(const std::string& name, std::initializer_list<int64_t> shape);
  // An f32 tensor in memory the weights own.
  TensorView owned_f32(const std::string& name, std::array<int64_t, 4> ne, std::vector<float> values);

 private:
  TensorView bind(const std::string& name, std::initializer_list<int64_t> shape, bool check_compute);
  const GgufFile& f_;
  OwnedBuffers& owned_;
};

// "blk.<il>.<what>"
std::string blk(int64_t il, const char* what);

}  // namespace moe
