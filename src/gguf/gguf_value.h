// GGUF metadata values: every type the format has, arrays of any of them
// (arrays of strings and arrays of arrays included). Values own their data
// so the writer can take them from a reader or build them from scratch.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "core/error.h"

namespace moe {

enum class GgufType : uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};
inline constexpr uint32_t kGgufTypeCount = 13;

// "uint32", "string", "array", ...; "type#N" for an unknown id.
const char* gguf_type_name(GgufType t);
// Size in bytes of a fixed-size scalar type; 0 for STRING and ARRAY.
size_t gguf_scalar_size(GgufType t);

class GgufValue {
 public:
  GgufValue() = default;

  // ---- construction --------------------------------------------------------
  static GgufValue u8(uint8_t v) { return scalar(GgufType::UINT8, v); }
  static GgufValue i8(int8_t v) { return scalar(GgufType::INT8, v); }
  static GgufValue u16(uint16_t v) { return scalar(GgufType::UINT16, v); }
  static GgufValue i16(int16_t v) { return scalar(GgufType::INT16, v); }
  static GgufValue u32(uint32_t v) { return scalar(GgufType::UINT32, v); }
  static GgufValue i32(int32_t v) { return scalar(GgufType::INT32, v); }
  static GgufValue u64(uint64_t v) { return scalar(GgufType::UINT64, v); }
  static GgufValue i64(int64_t v) { return scalar(GgufType::INT64, v); }
  static GgufValue f32(float v) { return scalar(GgufType::FLOAT32, v); }
  static GgufValue f64(double v) { return scalar(GgufType::FLOAT64, v); }
  static GgufValue boolean(bool v) { return scalar(GgufType::BOOL, static_cast<uint8_t>(v ? 1 : 0)); }
  static GgufValue string(std::string s);
  // An array of fixed-size scalars, given as their little-endian bytes.
  static GgufValue array_raw(GgufType elem, uint64_t count, std::vector<uint8_t> bytes);
  template <typename T>
  static GgufValue array(GgufType elem, const std::vector<T>& v);
  static GgufValue array_of_strings(std::vector<std::string> v);
  static GgufValue array_of_arrays(std::vector<GgufValue> v);  // all must be arrays

  // ---- inspection ------------------------------------------------------------
  GgufType type() const { return type_; }
  bool is_array() const { return type_ == GgufType::ARRAY; }
  bool is_integer() const;
  GgufType array_type() const { return elem_type_; }  // valid when is_array()
  uint64_t array_size() const { return count_; }      // valid when is_array()

  // Scalars. Integer getters accept any integer type whose value fits;
  // float getters accept FLOAT32 and FLOAT64. Throws otherwise.
  uint64_t as_u64() const;
  int64_t as_i64() const;
  double as_f64() const;
  bool as_bool() const;
  const std::string& as_string() const;

  // Arrays.
  const std::vector<std::string>& strings() const;  // ARRAY of STRING
  const std::vector<GgufValue>& arrays() const;     // ARRAY of ARRAY
  const std::vector<uint8_t>& raw() const { return raw_; }  // ARRAY of scalars, or a scalar's bytes
  int64_t int_at(uint64_t i) const;     // element i of an integer array (any width)
  double float_at(uint64_t i) const;    // element i of a float or integer array

  // "uint32 7", "string \"deepseek2\"", "array[string; 129280]"; long
  // arrays abbreviated after max_items.
  std::string to_string(size_t max_items = 8) const;

  bool operator==(const GgufValue& o) const;

 private:
  template <typename T>
  static GgufValue scalar(GgufType t, T v) {
    GgufValue g;
    g.type_ = t;
    g.raw_.resize(sizeof(T));
    std::memcpy(g.raw_.data(), &v, sizeof(T));
    return g;
  }
  int64_t scalar_as_i64(GgufType t, const uint8_t* p, bool* fits_signed, uint64_t* as_unsigned) const;

  GgufType type_ = GgufType::UINT8;
  GgufType elem_type_ = GgufType::UINT8;
  uint64_t count_ = 0;
  std::vector<uint8_t> raw_;            // scalar bytes, or packed scalar array
  std::string str_;                     // STRING
  std::vector<std::string> strings_;    // ARRAY of STRING
  std::vector<GgufValue> arrays_;       // ARRAY of ARRAY
};

template <typename T>
GgufValue GgufValue::array(GgufType elem, const std::vector<T>& v) {
  static_assert(std::is_arithmetic_v<T>);
  MOE_ASSERT(gguf_scalar_size(elem) == sizeof(T), "GgufValue::array: element type %s does not match a %zu-byte value",
             gguf_type_name(elem), sizeof(T));
  std::vector<uint8_t> bytes(v.size() * sizeof(T));
  if (!v.empty()) std::memcpy(bytes.data(), v.data(), bytes.size());
  return array_raw(elem, v.size(), std::move(bytes));
}

}  // namespace moe
