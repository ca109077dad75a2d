#include "core/ggml_type.h"

#include <cctype>
#include <string>

#include "core/error.h"

namespace moe {
namespace {

// Indexed by type id; name == nullptr marks an id that is not a ggml type.
// Block geometry as in ggml-common.h (sizeof each block_* struct).
constexpr GgmlTypeTraits kTraits[kGgmlTypeIdLimit] = {
    /* 0 F32     */ {"f32", 1, 4, true},
    /* 1 F16     */ {"f16", 1, 2, true},
    /* 2 Q4_0    */ {"q4_0", 32, 2 + 16, true},
    /* 3 Q4_1    */ {"q4_1", 32, 2 + 2 + 16, true},
    /* 4         */ {nullptr, 0, 0, false},
    /* 5         */ {nullptr, 0, 0, false},
    /* 6 Q5_0    */ {"q5_0", 32, 2 + 4 + 16, true},
    /* 7 Q5_1    */ {"q5_1", 32, 2 + 2 + 4 + 16, true},
    /* 8 Q8_0    */ {"q8_0", 32, 2 + 32, true},
    /* 9 Q8_1    */ {"q8_1", 32, 2 + 2 + 32, true},
    /* 10 Q2_K   */ {"q2_K", QK_K, 16 + 64 + 2 + 2, true},
    /* 11 Q3_K   */ {"q3_K", QK_K, 32 + 64 + 12 + 2, true},
    /* 12 Q4_K   */ {"q4_K", QK_K, 2 + 2 + 12 + 128, true},
    /* 13 Q5_K   */ {"q5_K", QK_K, 2 + 2 + 12 + 32 + 128, true},
    /* 14 Q6_K   */ {"q6_K", QK_K, 128 + 64 + 16 + 2, true},
    /* 15 Q8_K   */ {"q8_K", QK_K, 4 + 256 + 16 * 2, true},
    /* 16 IQ2_XXS*/ {"iq2_xxs", QK_K, 2 + 64, true},
    /* 17 IQ2_XS */ {"iq2_xs", QK_K, 2 + 64 + 8, true},
    /* 18 IQ3_XXS*/ {"iq3_xxs", QK_K, 2 + 96, true},
    /* 19 IQ1_S  */ {"iq1_s", QK_K, 2 + 32 + 16, true},
    /* 20 IQ4_NL */ {"iq4_nl", 32, 2 + 16, true},
    /* 21 IQ3_S  */ {"iq3_s", QK_K, 2 + 64 + 8 + 32 + 4, true},
    /* 22 IQ2_S  */ {"iq2_s", QK_K, 2 + 64 + 16, true},
    /* 23 IQ4_XS */ {"iq4_xs", QK_K, 2 + 2 + 4 + 128, true},
    /* 24 I8     */ {"i8", 1, 1, false},
    /* 25 I16    */ {"i16", 1, 2, false},
    /* 26 I32    */ {"i32", 1, 4, false},
    /* 27 I64    */ {"i64", 1, 8, false},
    /* 28 F64    */ {"f64", 1, 8, false},
    /* 29 IQ1_M  */ {"iq1_m", QK_K, 32 + 16 + 8, true},
    /* 30 BF16   */ {"bf16", 1, 2, true},
    /* 31        */ {nullptr, 0, 0, false},
    /* 32        */ {nullptr, 0, 0, false},
    /* 33        */ {nullptr, 0, 0, false},
    /* 34 TQ1_0  */ {"tq1_0", QK_K, 2 + 4 + 48, false},
    /* 35 TQ2_0  */ {"tq2_0", QK_K, 2 + 64, false},
    /* 36        */ {nullptr, 0, 0, false},
    /* 37        */ {nullptr, 0, 0, false},
    /* 38        */ {nullptr, 0, 0, false},
    /* 39 MXFP4  */ {"mxfp4", 32, 1 + 16, true},
    /* 40 NVFP4  */ {"nvfp4", 64, 4 + 32, false},
    /* 41 Q1_0   */ {"q1_0", 128, 2 + 16, false},
    /* 42 Q2_0   */ {"q2_0", 64, 2 + 16, false},
};

}  // namespace

const GgmlTypeTraits* ggml_type_traits(uint32_t id) {
  if (id >= static_cast<uint32_t>(kGgmlTypeIdLimit) || kTraits[id].name == nullptr) return nullptr;
  return &kTraits[id];
}

const GgmlTypeTraits& ggml_type_traits(GgmlType type) {
  // The interleaved layouts (quant/interleaved.h): a quarter of a group of
  // 4 rows per row. Not dequantized row by row (a row is not whole on its
  // own): can_dequantize false, so no generic path takes them; the CPU
  // matmul knows them.
  static constexpr GgmlTypeTraits kQ4KR4 = {"q4_K_r4", QK_K, 592 / 4, false};
  static constexpr GgmlTypeTraits kQ80R4 = {"q8_0_r4", 32, 136 / 4, false};
  static constexpr GgmlTypeTraits kQ50R4 = {"q5_0_r4", 32, 88 / 4, false};
  if (type == GgmlType::Q4_K_R4) return kQ4KR4;
  if (type == GgmlType::Q8_0_R4) return kQ80R4;
  if (type == GgmlType::Q5_0_R4) return kQ50R4;
  const GgmlTypeTraits* t = ggml_type_traits(static_cast<uint32_t>(type));
  MOE_ASSERT(t != nullptr, "invalid ggml type id %u", static_cast<unsigned>(type));
  return *t;
}

std::optional<GgmlType> ggml_type_from_name(std::string_view name) {
  for (uint32_t id = 0; id < static_cast<uint32_t>(kGgmlTypeIdLimit); ++id) {
    const char* n = kTraits[id].name;
    if (n == nullptr || std::string_view(n).size() != name.size()) continue;
    bool same = true;
    for (size_t i = 0; i < name.size() && same; ++i)
      same = std::tolower(static_cast<unsigned char>(n[i])) ==
             std::tolower(static_cast<unsigned char>(name[i]));
    if (same) return static_cast<GgmlType>(id);
  }
  return std::nullopt;
}

size_t ggml_row_size(GgmlType type, int64_t n) {
  const GgmlTypeTraits& t = ggml_type_traits(type);
  MOE_ASSERT(n >= 0 && n % t.block_size == 0,
             "a row of %lld elements is not a whole number of %s blocks (%lld elements each)",
             static_cast<long long>(n), t.name, static_cast<long long>(t.block_size));
  return static_cast<size_t>(n / t.block_size) * t.type_size;
}

void ggml_require_supported(GgmlType type, std::string_view what) {
  const GgmlTypeTraits& t = ggml_type_traits(type);
  if (t.can_dequantize) return;
  std::string supported;
  for (const GgmlTypeTraits& k : kTraits)
    if (k.name && k.can_dequantize) supported += std::string(supported.empty() ? "" : " ") + k.name;
  throw_error("%.*s has type %s, which moe.cpp cannot compute with yet (supported: %s)", static_cast<int>(what.size()),
              what.data(), t.name, supported.c_str());
}

}  // namespace moe
