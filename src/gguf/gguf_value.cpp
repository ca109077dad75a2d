#include "gguf/gguf_value.h"

#include <cinttypes>
#include <limits>

namespace moe {

const char* gguf_type_name(GgufType t) {
  switch (t) {
    case GgufType::UINT8: return "uint8";
    case GgufType::INT8: return "int8";
    case GgufType::UINT16: return "uint16";
    case GgufType::INT16: return "int16";
    case GgufType::UINT32: return "uint32";
    case GgufType::INT32: return "int32";
    case GgufType::FLOAT32: return "float32";
    case GgufType::BOOL: return "bool";
    case GgufType::STRING: return "string";
    case GgufType::ARRAY: return "array";
    case GgufType::UINT64: return "uint64";
    case GgufType::INT64: return "int64";
    case GgufType::FLOAT64: return "float64";
  }
  return "unknown";
}

size_t gguf_scalar_size(GgufType t) {
  switch (t) {
    case GgufType::UINT8: case GgufType::INT8: case GgufType::BOOL: return 1;
    case GgufType::UINT16: case GgufType::INT16: return 2;
    case GgufType::UINT32: case GgufType::INT32: case GgufType::FLOAT32: return 4;
    case GgufType::UINT64: case GgufType::INT64: case GgufType::FLOAT64: return 8;
    case GgufType::STRING: case GgufType::ARRAY: return 0;
  }
  return 0;
}

static bool is_integer_type(GgufType t) {
  switch (t) {
    case GgufType::UINT8: case GgufType::INT8: case GgufType::UINT16: case GgufType::INT16:
    case GgufType::UINT32: case GgufType::INT32: case GgufType::UINT64: case GgufType::INT64:
      return true;
    default: return false;
  }
}

GgufValue GgufValue::string(std::string s) {
  GgufValue g;
  g.type_ = GgufType::STRING;
  g.str_ = std::move(s);
  return g;
}

GgufValue GgufValue::array_raw(GgufType elem, uint64_t count, std::vector<uint8_t> bytes) {
  const size_t es = gguf_scalar_size(elem);
  MOE_ASSERT(es != 0, "GgufValue::array_raw: %s is not a fixed-size scalar type", gguf_type_name(elem));
  MOE_ASSERT(bytes.size() == count * es, "GgufValue::array_raw: %zu bytes for %" PRIu64 " %s values",
             bytes.size(), count, gguf_type_name(elem));
  GgufValue g;
  g.type_ = GgufType::ARRAY;
  g.elem_type_ = elem;
  g.count_ = count;
  g.raw_ = std::move(bytes);
  return g;
}

GgufValue GgufValue::array_of_strings(std::vector<std::string> v) {
  GgufValue g;
  g.type_ = GgufType::ARRAY;
  g.elem_type_ = GgufType::STRING;
  g.count_ = v.size();
  g.strings_ = std::move(v);
  return g;
}

GgufValue GgufValue::array_of_arrays(std::vector<GgufValue> v) {
  for (const auto& a : v) MOE_ASSERT(a.is_array(), "GgufValue::array_of_arrays: element is a %s", gguf_type_name(a.type()));
  GgufValue g;
  g.type_ = GgufType::ARRAY;
  g.elem_type_ = GgufType::ARRAY;
  g.count_ = v.size();
  g.arrays_ = std::move(v);
  return g;
}

bool GgufValue::is_integer() const { return is_integer_type(type_); }

// Reads a scalar integer of type t at p. Returns it as int64 when it fits;
// *as_unsigned always gets the value reinterpreted for unsigned use.
int64_t GgufValue::scalar_as_i64(GgufType t, const uint8_t* p, bool* fits_signed, uint64_t* as_unsigned) const {
  *fits_signed = true;
  switch (t) {
#define MOE_CASE(TYPE, CT)            \
  case GgufType::TYPE: {              \
    CT v;                             \
    std::memcpy(&v, p, sizeof v);     \
    *as_unsigned = static_cast<uint64_t>(v); \
    return static_cast<int64_t>(v);   \
  }
    MOE_CASE(UINT8, uint8_t)
    MOE_CASE(INT8, int8_t)
    MOE_CASE(UINT16, uint16_t)
    MOE_CASE(INT16, int16_t)
    MOE_CASE(UINT32, uint32_t)
    MOE_CASE(INT32, int32_t)
    MOE_CASE(INT64, int64_t)
#undef MOE_CASE
    case GgufType::UINT64: {
      uint64_t v;
      std::memcpy(&v, p, sizeof v);
      *as_unsigned = v;
      *fits_signed = v <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
      return static_cast<int64_t>(v);
    }
    default: throw_error("value of type %s is not an integer", gguf_type_name(t));
  }
}

uint64_t GgufValue::as_u64() const {
  MOE_ASSERT(is_integer(), "expected an integer, found %s", gguf_type_name(type_));
  bool fits = true;
  uint64_t u = 0;
  const int64_t s = scalar_as_i64(type_, raw_.data(), &fits, &u);
  if (fits && s < 0) throw_error("expected a non-negative integer, found %s %lld", gguf_type_name(type_), static_cast<long long>(s));
  return fits ? static_cast<uint64_t>(s) : u;
}

int64_t GgufValue::as_i64() const {
  MOE_ASSERT(is_integer(), "expected an integer, found %s", gguf_type_name(type_));
  bool fits = true;
  uint64_t u = 0;
  const int64_t s = scalar_as_i64(type_, raw_.data(), &fits, &u);
  MOE_ASSERT(fits, "integer %llu does not fit in int64", static_cast<unsigned long long>(u));
  return s;
}

double GgufValue::as_f64() const {
  if (type_ == GgufType::FLOAT32) {
    float f;
    std::memcpy(&f, raw_.data(), 4);
    return f;
  }
  if (type_ == GgufType::FLOAT64) {
    double d;
    std::memcpy(&d, raw_.data(), 8);
    return d;
  }
  throw_error("expected a float, found %s", gguf_type_name(type_));
}

bool GgufValue::as_bool() const {
  MOE_ASSERT(type_ == GgufType::BOOL, "expected bool, found %s", gguf_type_name(type_));
  return raw_[0] != 0;
}

const std::string& GgufValue::as_string() const {
  MOE_ASSERT(type_ == GgufType::STRING, "expected string, found %s", gguf_type_name(type_));
  return str_;
}

const std::vector<std::string>& GgufValue::strings() const {
  MOE_ASSERT(is_array() && elem_type_ == GgufType::STRING, "expected an array of strings, found %s",
             is_array() ? (std::string("array of ") + gguf_type_name(elem_type_)).c_str() : gguf_type_name(type_));
  return strings_;
}

const std::vector<GgufValue>& GgufValue::arrays() const {
  MOE_ASSERT(is_array() && elem_type_ == GgufType::ARRAY, "expected an array of arrays");
  return arrays_;
}

int64_t GgufValue::int_at(uint64_t i) const {
  MOE_ASSERT(is_array() && is_integer_type(elem_type_), "expected an integer array");
  MOE_ASSERT(i < count_, "array index %llu out of range (%llu elements)", static_cast<unsigned long long>(i),
             static_cast<unsigned long long>(count_));
  bool fits = true;
  uint64_t u = 0;
  const int64_t s = scalar_as_i64(elem_type_, raw_.data() + i * gguf_scalar_size(elem_type_), &fits, &u);
  MOE_ASSERT(fits, "array element %llu does not fit in int64", static_cast<unsigned long long>(u));
  return s;
}

double GgufValue::float_at(uint64_t i) const {
  MOE_ASSERT(is_array(), "expected an array");
  MOE_ASSERT(i < count_, "array index %llu out of range (%llu elements)", static_cast<unsigned long long>(i),
             static_cast<unsigned long long>(count_));
  if (elem_type_ == GgufType::FLOAT32) {
    float f;
    std::memcpy(&f, raw_.data() + i * 4, 4);
    return f;
  }
  if (elem_type_ == GgufType::FLOAT64) {
    double d;
    std::memcpy(&d, raw_.data() + i * 8, 8);
    return d;
  }
  return static_cast<double>(int_at(i));
}

static std::string quote(const std::string& s, size_t max_len = 60) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size() && i < max_len; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') { out += '\\'; out += static_cast<char>(c); }
    else if (c == '\n') out += "\\n";
    else if (c < 0x20) out += strfmt("\\x%02x", c);
    else out += static_cast<char>(c);
  }
  if (s.size() > max_len) out += "...";
  return out + "\"";
}

static std::string scalar_text(GgufType t, const uint8_t* p) {
  switch (t) {
    case GgufType::FLOAT32: { float f; std::memcpy(&f, p, 4); return strfmt("%.9g", f); }
    case GgufType::FLOAT64: { double d; std::memcpy(&d, p, 8); return strfmt("%.17g", d); }
    case GgufType::BOOL: return *p ? "true" : "false";
    case GgufType::UINT8: return strfmt("%u", static_cast<unsigned>(*p));
    case GgufType::INT8: return strfmt("%d", static_cast<int>(static_cast<int8_t>(*p)));
    case GgufType::UINT16: { uint16_t v; std::memcpy(&v, p, 2); return strfmt("%u", static_cast<unsigned>(v)); }
    case GgufType::INT16: { int16_t v; std::memcpy(&v, p, 2); return strfmt("%d", static_cast<int>(v)); }
    case GgufType::UINT32: { uint32_t v; std::memcpy(&v, p, 4); return strfmt("%" PRIu32, v); }
    case GgufType::INT32: { int32_t v; std::memcpy(&v, p, 4); return strfmt("%" PRId32, v); }
    case GgufType::UINT64: { uint64_t v; std::memcpy(&v, p, 8); return strfmt("%" PRIu64, v); }
    case GgufType::INT64: { int64_t v; std::memcpy(&v, p, 8); return strfmt("%" PRId64, v); }
    default: return "?";
  }
}

std::string GgufValue::to_string(size_t max_items) const {
  if (type_ == GgufType::STRING) return quote(str_);
  if (!is_array()) return scalar_text(type_, raw_.data());
  std::string out = strfmt("[%s; %" PRIu64 "]", gguf_type_name(elem_type_), count_);
  const uint64_t shown = count_ < max_items ? count_ : max_items;
  for (uint64_t i = 0; i < shown; ++i) {
    out += i == 0 ? " " : ", ";
    if (elem_type_ == GgufType::STRING) out += quote(strings_[i], 40);
    else if (elem_type_ == GgufType::ARRAY) out += arrays_[i].to_string(max_items);
    else out += scalar_text(elem_type_, raw_.data() + i * gguf_scalar_size(elem_type_));
  }
  if (shown < count_) out += strfmt(", ... (%" PRIu64 " more)", count_ - shown);
  return out;
}

bool GgufValue::operator==(const GgufValue& o) const {
  return type_ == o.type_ && elem_type_ == o.elem_type_ && count_ == o.count_ && raw_ == o.raw_ &&
         str_ == o.str_ && strings_ == o.strings_ && arrays_ == o.arrays_;
}

}  // namespace moe
