#include "convert/quantize_plan.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <regex>

#include "core/error.h"
#include "gguf/gguf_reader.h"
#include "quant/quantize.h"

namespace moe {

namespace {

// ---- file types ---------------------------------------------------------------

struct FileTypeName {
  const char* name;
  FileType ft;
};

// llama-quantize's QUANT_OPTIONS, in its order: a numeric id resolves to the
// first entry with that id, so the aliases come after their targets' ids
// were already listed (as there).
constexpr FileTypeName kFileTypeNames[] = {
    {"Q1_0", FileType::MOSTLY_Q1_0},       {"Q2_0", FileType::MOSTLY_Q2_0},
    {"Q4_0", FileType::MOSTLY_Q4_0},       {"Q4_1", FileType::MOSTLY_Q4_1},
    {"MXFP4_MOE", FileType::MOSTLY_MXFP4_MOE},
    {"Q5_0", FileType::MOSTLY_Q5_0},       {"Q5_1", FileType::MOSTLY_Q5_1},
    {"IQ2_XXS", FileType::MOSTLY_IQ2_XXS}, {"IQ2_XS", FileType::MOSTLY_IQ2_XS},
    {"IQ2_S", FileType::MOSTLY_IQ2_S},     {"IQ2_M", FileType::MOSTLY_IQ2_M},
    {"IQ1_S", FileType::MOSTLY_IQ1_S},     {"IQ1_M", FileType::MOSTLY_IQ1_M},
    {"TQ1_0", FileType::MOSTLY_TQ1_0},     {"TQ2_0", FileType::MOSTLY_TQ2_0},
    {"Q2_K", FileType::MOSTLY_Q2_K},       {"Q2_K_S", FileType::MOSTLY_Q2_K_S},
    {"IQ3_XXS", FileType::MOSTLY_IQ3_XXS}, {"IQ3_S", FileType::MOSTLY_IQ3_S},
    {"IQ3_M", FileType::MOSTLY_IQ3_M},     {"Q3_K", FileType::MOSTLY_Q3_K_M},
    {"IQ3_XS", FileType::MOSTLY_IQ3_XS},   {"Q3_K_S", FileType::MOSTLY_Q3_K_S},
    {"Q3_K_M", FileType::MOSTLY_Q3_K_M},   {"Q3_K_L", FileType::MOSTLY_Q3_K_L},
    {"IQ4_NL", FileType::MOSTLY_IQ4_NL},   {"IQ4_XS", FileType::MOSTLY_IQ4_XS},
    {"Q4_K", FileType::MOSTLY_Q4_K_M},     {"Q4_K_S", FileType::MOSTLY_Q4_K_S},
    {"Q4_K_M", FileType::MOSTLY_Q4_K_M},   {"Q5_K", FileType::MOSTLY_Q5_K_M},
    {"Q5_K_S", FileType::MOSTLY_Q5_K_S},   {"Q5_K_M", FileType::MOSTLY_Q5_K_M},
    {"Q6_K", FileType::MOSTLY_Q6_K},       {"Q8_0", FileType::MOSTLY_Q8_0},
    {"F16", FileType::MOSTLY_F16},         {"BF16", FileType::MOSTLY_BF16},
    {"F32", FileType::ALL_F32},
};

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;
  return true;
}

bool is_quantized(GgmlType t) {
  return t != GgmlType::F32 && t != GgmlType::F16 && t != GgmlType::BF16 && t != GgmlType::F64 &&
         t != GgmlType::I8 && t != GgmlType::I16 && t != GgmlType::I32 && t != GgmlType::I64;
}

// ---- tensor categories (llama-quant.cpp's tensor_get_category) -------------------

enum class Category { TokenEmbd, AttnQ, AttnV, AttnK, AttnQkv, AttnKvB, AttnOutput, FfnUp, FfnGate, FfnDown, Output, Other };

bool contains(std::string_view s, std::string_view part) { return s.find(part) != std::string_view::npos; }

Category category_of(std::string_view name) {
  if (name == "output.weight") return Category::Output;
  if (name == "token_embd.weight" || name == "per_layer_token_embd.weight") return Category::TokenEmbd;
  if (contains(name, "attn_qkv.weight")) return Category::AttnQkv;
  if (contains(name, "attn_kv_b.weight")) return Category::AttnKvB;
  if (contains(name, "attn_v.weight")) return Category::AttnV;
  if (contains(name, "attn_k.weight")) return Category::AttnK;
  if (contains(name, "attn_q.weight")) return Category::AttnQ;
  if (contains(name, "attn_output.weight")) return Category::AttnOutput;
  if (contains(name, "ffn_up")) return Category::FfnUp;
  if (contains(name, "ffn_gate")) return Category::FfnGate;
  if (contains(name, "ffn_down")) return Category::FfnDown;
  return Category::Other;
}

// The tensors llama.cpp treats as attn_v (few, and sensitive to quantization).
bool is_attn_v_like(Category c) { return c == Category::AttnV || c == Category::AttnQkv || c == Category::AttnKvB; }

// sscanf(name, "blk.%d.", &layer) == 1.
std::optional<int> layer_of(std::string_view name) {
  if (name.substr(0, 4) != "blk.") return std::nullopt;
  std::string_view rest = name.substr(4);
  size_t i = 0;
  while (i < rest.size() && std::isspace(static_cast<unsigned char>(rest[i]))) ++i;
  if (i < rest.size() && rest[i] == '+') ++i;
  int value = 0;
  auto [end, ec] = std::from_chars(rest.data() + i, rest.data() + rest.size(), value);
  if (ec != std::errc()) return std::nullopt;
  return value;
}

// ---- the rules ------------------------------------------------------------------

// Mirrors quantize_state_impl: counters that advance as tensors are visited
// in llama_tensor_order.
struct RuleState {
  const PlanModel& model;
  FileType ft;
  int n_attention_wv = 0;
  int i_attention_wv = 0;
  int n_ffn = 0;  // n_ffn_down = n_ffn_gate = n_ffn_up = n_layer
  int i_ffn_down = 0, i_ffn_gate = 0, i_ffn_up = 0;
  bool tied_embeddings = true;  // until output.weight is seen

  bool has_imatrix = false;  // a few rules differ when an importance matrix is given

  bool falcon() const { return model.arch == "falcon"; }
  uint32_t n_gqa() const { return model.n_head_kv == 0 ? 0 : model.n_head / model.n_head_kv; }

  // Layer index for the per-layer rules. With experts the counter is useless
  // (llama.cpp notes Mixtral's expert tensors are not consecutive), so the
  // layer comes from the name.
  std::pair<int, int> layer_info(int counter, const std::string& name) const {
    if (std::max<uint32_t>(1, model.n_expert) > 1) {
      const std::optional<int> layer = layer_of(name);
      MOE_ASSERT(layer, "tensor '%s': cannot read the layer number from its name (expected \"blk.N.\")", name.c_str());
      MOE_ASSERT(*layer >= 0 && *layer < n_ffn, "tensor '%s': layer %d is outside [0, %d) (block_count)", name.c_str(),
                 *layer, n_ffn);
      return {*layer, n_ffn};
    }
    return {counter, n_ffn};
  }
};

bool use_more_bits(int i_layer, int n_layers) {
  return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

bool is_one_of(FileType ft, std::initializer_list<FileType> set) {
  for (FileType f : set)
    if (f == ft) return true;
  return false;
}

// llama_tensor_get_type_impl, branch for branch in llama.cpp's order (the
// ternary and Q1_0/Q2_0 branches are unreachable: those file types are
// refused).
GgmlType mixture_type(RuleState& qs, GgmlType new_type, const PlanTensor& t, Category cat) {
  using F = FileType;
  using G = GgmlType;
  const FileType ft = qs.ft;
  const std::string& name = t.name;
  // The very-low-bit IQ file types share one set of rules.
  const bool iq_low = is_one_of(ft, {F::MOSTLY_IQ2_XXS, F::MOSTLY_IQ2_XS, F::MOSTLY_IQ1_S, F::MOSTLY_IQ2_S,
                                     F::MOSTLY_IQ2_M, F::MOSTLY_IQ1_M});
  const bool iq2_s_or_m = ft == F::MOSTLY_IQ2_S || ft == F::MOSTLY_IQ2_M;
  if (cat == Category::Output || (qs.tied_embeddings && cat == Category::TokenEmbd)) {
    const int64_t nx = t.shape.at(0);
    if (ft == F::MOSTLY_MXFP4_MOE) new_type = G::Q8_0;
    else if (qs.falcon() || nx % ggml_type_traits(new_type).block_size != 0) new_type = G::Q8_0;
    else if (is_one_of(ft, {F::MOSTLY_IQ2_XXS, F::MOSTLY_IQ2_XS, F::MOSTLY_IQ3_XXS, F::MOSTLY_IQ1_S, F::MOSTLY_IQ2_S,
                            F::MOSTLY_IQ2_M, F::MOSTLY_IQ1_M}))
      new_type = G::Q5_K;
    else if (new_type != G::Q8_0) new_type = G::Q6_K;
  } else if (ft == F::MOSTLY_MXFP4_MOE) {
    // Expert stacks (a third dimension over the experts) MXFP4, everything
    // else Q8_0, untied token embeddings included: this branch comes first.
    // bailingmoe3's MLA projections are 3-D too, so there only the FFN roles
    // count as experts.
    const bool experts = t.shape.size() > 2 && t.shape[2] > 1;
    const bool ffn = cat == Category::FfnUp || cat == Category::FfnGate || cat == Category::FfnDown;
    new_type = experts && (qs.model.arch != "bailingmoe3" || ffn) ? G::MXFP4 : G::Q8_0;
  } else if (cat == Category::TokenEmbd) {
    if (is_one_of(ft, {F::MOSTLY_IQ2_XXS, F::MOSTLY_IQ2_XS, F::MOSTLY_IQ1_S, F::MOSTLY_IQ1_M})) new_type = G::Q2_K;
    else if (iq2_s_or_m || ft == F::MOSTLY_IQ3_XXS) new_type = G::IQ3_S;
  } else if (iq_low) {
    if (is_attn_v_like(cat)) {
      if (qs.n_gqa() >= 4 || qs.model.n_expert >= 4) new_type = G::Q4_K;
      else new_type = iq2_s_or_m ? G::IQ3_S : G::Q2_K;
      ++qs.i_attention_wv;
    } else if (qs.model.n_expert == 8 && cat == Category::AttnK) {
      new_type = G::Q4_K;
    } else if (cat == Category::FfnDown) {
      // This branch reads the raw counter, not the layer from the name.
      if (qs.i_ffn_down < qs.n_ffn / 8) new_type = iq2_s_or_m ? G::IQ3_S : G::Q2_K;
      ++qs.i_ffn_down;
    } else if (cat == Category::AttnOutput) {
      if (qs.model.n_expert == 8) new_type = G::Q5_K;
      else if (ft == F::MOSTLY_IQ1_S || ft == F::MOSTLY_IQ1_M) new_type = G::IQ2_XXS;
      else if (iq2_s_or_m) new_type = G::IQ3_S;
    }
  } else if (is_attn_v_like(cat)) {
    if (ft == F::MOSTLY_Q2_K) new_type = qs.n_gqa() >= 4 ? G::Q4_K : G::Q3_K;
    else if (ft == F::MOSTLY_Q2_K_S && qs.n_gqa() >= 4) new_type = G::Q4_K;
    else if (ft == F::MOSTLY_IQ3_XXS) new_type = qs.n_gqa() >= 4 ? G::Q4_K : !qs.has_imatrix ? G::IQ3_S : G::IQ3_XXS;
    else if ((ft == F::MOSTLY_IQ3_XS || ft == F::MOSTLY_IQ3_S) && qs.n_gqa() >= 4) new_type = G::Q4_K;
    else if (ft == F::MOSTLY_IQ3_M) new_type = G::Q4_K;
    else if (ft == F::MOSTLY_Q3_K_M) new_type = qs.i_attention_wv < 2 ? G::Q5_K : G::Q4_K;
    else if (ft == F::MOSTLY_Q3_K_L) new_type = G::Q5_K;
    else if ((ft == F::MOSTLY_IQ4_NL || ft == F::MOSTLY_IQ4_XS) && qs.n_gqa() >= 4) new_type = G::Q5_K;
    else if ((ft == F::MOSTLY_Q4_K_M || ft == F::MOSTLY_Q5_K_M) && use_more_bits(qs.i_attention_wv, qs.n_attention_wv))
      new_type = G::Q6_K;
    else if (ft == F::MOSTLY_Q4_K_S && qs.i_attention_wv < 4) new_type = G::Q5_K;
    // (llama.cpp also bumps Q3_K/Q4_K to Q5_K for LLaMA-70B, which shares attn_v across 8 heads.)
    if (qs.model.n_expert == 8) new_type = G::Q8_0;  // Mixtral: costs ~128 MB
    ++qs.i_attention_wv;
  } else if (cat == Category::AttnK) {
    if (qs.model.n_expert == 8) new_type = G::Q8_0;
    else if (ft == F::MOSTLY_IQ3_XS) new_type = G::IQ3_XXS;
    else if (ft == F::MOSTLY_IQ3_XXS) new_type = G::IQ2_S;
  } else if (cat == Category::AttnQ) {
    if (ft == F::MOSTLY_IQ3_XS) new_type = G::IQ3_XXS;
    else if (ft == F::MOSTLY_IQ3_XXS) new_type = G::IQ2_S;
  } else if (cat == Category::FfnDown) {
    auto [i_layer, n_layer] = qs.layer_info(qs.i_ffn_down, name);
    if (ft == F::MOSTLY_Q2_K) {
      new_type = G::Q3_K;
    } else if (ft == F::MOSTLY_Q2_K_S) {
      if (i_layer < n_layer / 8) new_type = G::Q4_K;
    } else if (ft == F::MOSTLY_IQ3_XXS && !qs.has_imatrix) {
      new_type = i_layer < n_layer / 8 ? G::Q4_K : G::Q3_K;
    } else if (ft == F::MOSTLY_Q3_K_M) {
      new_type = i_layer < n_layer / 16                        ? G::Q5_K
                 : !qs.falcon() || use_more_bits(i_layer, n_layer) ? G::Q4_K
                                                                 : G::Q3_K;
    } else if (ft == F::MOSTLY_IQ3_M &&
               (i_layer < n_layer / 8 || (qs.model.n_expert == 8 && use_more_bits(i_layer, n_layer)))) {
      new_type = G::Q4_K;
    } else if (ft == F::MOSTLY_Q3_K_L) {
      new_type = qs.falcon() ? G::Q4_K : G::Q5_K;
    } else if (ft == F::MOSTLY_Q4_K_M) {
      if (qs.falcon()) {
        new_type = i_layer < n_layer / 16 ? G::Q6_K : use_more_bits(i_layer, n_layer) ? G::Q5_K : G::Q4_K;
      } else if (use_more_bits(i_layer, n_layer)) {
        new_type = G::Q6_K;
      }
    } else if (i_layer < n_layer / 8 && (ft == F::MOSTLY_IQ4_NL || ft == F::MOSTLY_IQ4_XS) && !qs.has_imatrix) {
      new_type = G::Q5_K;
    } else if (ft == F::MOSTLY_Q5_K_M && use_more_bits(i_layer, n_layer)) {
      new_type = G::Q6_K;
    } else if (ft == F::MOSTLY_Q4_K_S && !qs.falcon() && i_layer < n_layer / 8) {
      new_type = G::Q5_K;
    } else if ((ft == F::MOSTLY_Q4_0 || ft == F::MOSTLY_Q5_0) && qs.has_imatrix && i_layer < n_layer / 8) {
      // llama.cpp guards the first ffn_down layers of Q4_0/Q5_0, only with an imatrix.
      new_type = ft == F::MOSTLY_Q4_0 ? G::Q4_1 : G::Q5_1;
    }
    ++qs.i_ffn_down;
  } else if (cat == Category::AttnOutput) {
    if (!qs.falcon()) {
      if (qs.model.n_expert == 8) {
        if (is_one_of(ft, {F::MOSTLY_Q2_K, F::MOSTLY_IQ3_XS, F::MOSTLY_IQ3_XXS, F::MOSTLY_Q3_K_S, F::MOSTLY_Q3_K_M,
                           F::MOSTLY_IQ4_NL, F::MOSTLY_Q4_K_S, F::MOSTLY_Q4_K_M, F::MOSTLY_IQ3_S, F::MOSTLY_IQ3_M,
                           F::MOSTLY_IQ4_XS}))
          new_type = G::Q5_K;
      } else {
        if (ft == F::MOSTLY_Q2_K) new_type = G::Q3_K;
        else if (ft == F::MOSTLY_IQ3_XXS) new_type = G::IQ3_S;
        else if (ft == F::MOSTLY_Q3_K_M) new_type = G::Q4_K;
        else if (ft == F::MOSTLY_Q3_K_L) new_type = G::Q5_K;
        else if (ft == F::MOSTLY_IQ3_M) new_type = G::Q4_K;
      }
    } else if (ft == F::MOSTLY_Q3_K_L) {
      new_type = G::Q4_K;
    }
  } else if (cat == Category::FfnGate || cat == Category::FfnUp) {
    int& counter = cat == Category::FfnGate ? qs.i_ffn_gate : qs.i_ffn_up;
    auto [i_layer, n_layer] = qs.layer_info(counter, name);
    if (ft == F::MOSTLY_IQ3_XS && i_layer >= n_layer / 8 && i_layer < 7 * n_layer / 8) new_type = G::IQ3_XXS;
    ++counter;
  }
  return new_type;
}

// tensor_type_fallback: a type whose blocks do not tile the row is replaced by
// one with 32-element blocks, and failing that by F16.
GgmlType fallback_type(const PlanTensor& t, GgmlType target, bool* fell_back) {
  const int64_t ncols = t.shape.at(0);
  if (ncols % ggml_type_traits(target).block_size == 0) return target;
  *fell_back = true;
  GgmlType out = target;
  switch (target) {
    case GgmlType::IQ1_S: case GgmlType::IQ1_M: case GgmlType::IQ2_XXS: case GgmlType::IQ2_XS: case GgmlType::IQ2_S:
    case GgmlType::IQ3_XXS: case GgmlType::IQ3_S: case GgmlType::IQ4_XS: out = GgmlType::IQ4_NL; break;
    case GgmlType::Q2_K: case GgmlType::Q3_K: out = GgmlType::Q4_0; break;
    case GgmlType::Q4_K: out = GgmlType::Q5_0; break;
    case GgmlType::Q5_K: out = GgmlType::Q5_1; break;
    case GgmlType::Q6_K: out = GgmlType::Q8_0; break;
    default:
      MOE_ASSERT(ggml_type_traits(target).block_size <= 32,
                 "tensor '%s': rows of %lld do not fit type %s and no fallback type is defined for it", t.name.c_str(),
                 static_cast<long long>(ncols), ggml_type_name(target));
  }
  if (ncols % ggml_type_traits(out).block_size != 0) out = GgmlType::F16;
  return out;
}

uint32_t first_u32(const GgufFile& f, const std::string& key, std::optional<uint32_t> fallback) {
  const GgufValue* v = f.find(key);
  if (!v) {
    if (fallback) return *fallback;
    throw GgufError(strfmt("%s: key '%s' is missing", f.path().c_str(), key.c_str()));
  }
  if (v->is_array()) {
    MOE_ASSERT(v->array_size() > 0, "%s: key '%s' is an empty array", f.path().c_str(), key.c_str());
    return static_cast<uint32_t>(v->int_at(0));
  }
  return static_cast<uint32_t>(v->as_u64());
}

}  // namespace

// ---- public --------------------------------------------------------------------------

const char* file_type_name(FileType ft) {
  for (const auto& e : kFileTypeNames)
    if (e.ft == ft) {
      // Prefer the full name over the alias ("Q4_K_M", not "Q4_K").
      if (ft == FileType::MOSTLY_Q3_K_M) return "Q3_K_M";
      if (ft == FileType::MOSTLY_Q4_K_M) return "Q4_K_M";
      if (ft == FileType::MOSTLY_Q5_K_M) return "Q5_K_M";
      return e.name;
    }
  return "unknown";
}

std::optional<FileType> parse_file_type(std::string_view s) {
  for (const auto& e : kFileTypeNames)
    if (iequals(e.name, s)) return e.ft;
  // std::stoi semantics as llama-quantize: leading digits are enough ("15abc" is 15).
  int id = 0;
  size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  auto [end, ec] = std::from_chars(s.data() + i, s.data() + s.size(), id);
  if (ec != std::errc()) return std::nullopt;
  for (const auto& e : kFileTypeNames)
    if (static_cast<int>(e.ft) == id) return e.ft;
  return std::nullopt;
}

GgmlType file_type_default_tensor_type(FileType ft) {
  switch (ft) {
    case FileType::ALL_F32: return GgmlType::F32;
    case FileType::MOSTLY_F16: return GgmlType::F16;
    case FileType::MOSTLY_BF16: return GgmlType::BF16;
    case FileType::MOSTLY_Q4_0: return GgmlType::Q4_0;
    case FileType::MOSTLY_Q4_1: return GgmlType::Q4_1;
    case FileType::MOSTLY_Q5_0: return GgmlType::Q5_0;
    case FileType::MOSTLY_Q5_1: return GgmlType::Q5_1;
    case FileType::MOSTLY_Q8_0: return GgmlType::Q8_0;
    case FileType::MOSTLY_Q1_0: return GgmlType::Q1_0;
    case FileType::MOSTLY_Q2_0: return GgmlType::Q2_0;
    case FileType::MOSTLY_MXFP4_MOE: return GgmlType::MXFP4;
    case FileType::MOSTLY_Q2_K_S: case FileType::MOSTLY_Q2_K: return GgmlType::Q2_K;
    case FileType::MOSTLY_IQ3_XS: return GgmlType::IQ3_S;
    case FileType::MOSTLY_Q3_K_S: case FileType::MOSTLY_Q3_K_M: case FileType::MOSTLY_Q3_K_L: return GgmlType::Q3_K;
    case FileType::MOSTLY_Q4_K_S: case FileType::MOSTLY_Q4_K_M: return GgmlType::Q4_K;
    case FileType::MOSTLY_Q5_K_S: case FileType::MOSTLY_Q5_K_M: return GgmlType::Q5_K;
    case FileType::MOSTLY_Q6_K: return GgmlType::Q6_K;
    case FileType::MOSTLY_TQ1_0: return GgmlType::TQ1_0;
    case FileType::MOSTLY_TQ2_0: return GgmlType::TQ2_0;
    case FileType::MOSTLY_IQ2_XXS: return GgmlType::IQ2_XXS;
    case FileType::MOSTLY_IQ2_XS: case FileType::MOSTLY_IQ2_S: return GgmlType::IQ2_XS;
    case FileType::MOSTLY_IQ2_M: return GgmlType::IQ2_S;
    case FileType::MOSTLY_IQ3_XXS: return GgmlType::IQ3_XXS;
    case FileType::MOSTLY_IQ1_S: return GgmlType::IQ1_S;
    case FileType::MOSTLY_IQ1_M: return GgmlType::IQ1_M;
    case FileType::MOSTLY_IQ4_NL: return GgmlType::IQ4_NL;
    case FileType::MOSTLY_IQ4_XS: return GgmlType::IQ4_XS;
    case FileType::MOSTLY_IQ3_S: case FileType::MOSTLY_IQ3_M: return GgmlType::IQ3_S;
  }
  throw_error("file type %u has no default tensor type", static_cast<unsigned>(ft));
}

bool file_type_supported(FileType ft) {
  // TQ*, Q1_0 and Q2_0 need quantizers moe.cpp does not have.
  return quantize_rows_supported(file_type_default_tensor_type(ft));
}

bool type_requires_imatrix(std::string_view name, GgmlType type, FileType ft) {
  if (name == "token_embd.weight" || name == "per_layer_token_embd.weight" || name == "output.weight") return false;
  switch (type) {
    case GgmlType::IQ3_XXS: case GgmlType::IQ2_XXS: case GgmlType::IQ2_XS: case GgmlType::IQ2_S:
    case GgmlType::IQ1_M: case GgmlType::IQ1_S:
      return true;
    case GgmlType::Q2_K:
      return ft == FileType::MOSTLY_Q2_K_S;  // the one K-quant llama.cpp will not make blind
    default:
      return false;
  }
}

std::string supported_file_type_names() {
  std::string out;
  for (const auto& e : kFileTypeNames) {
    if (!file_type_supported(e.ft)) continue;
    if (!out.empty()) out += ", ";
    out += e.name;
  }
  return out;
}

PlanModel plan_model_from_gguf(const GgufFile& f) {
  PlanModel m;
  m.arch = f.get_string("general.architecture");
  m.n_layer = first_u32(f, m.arch + ".block_count", std::nullopt);
  m.n_expert = first_u32(f, m.arch + ".expert_count", 0u);
  if (m.n_expert <= 1) m.n_expert = 0;  // llama.cpp: a single expert is a dense FFN
  m.n_head = first_u32(f, m.arch + ".attention.head_count", 0u);
  m.n_head_kv = first_u32(f, m.arch + ".attention.head_count_kv", m.n_head);
  return m;
}

TypeOverride parse_type_override(std::string_view arg, bool any_computable) {
  const size_t eq = arg.find('=');
  MOE_ASSERT(eq != std::string_view::npos, "--tensor-type '%.*s': expected REGEX=TYPE", static_cast<int>(arg.size()),
             arg.data());
  MOE_ASSERT(eq > 0, "--tensor-type '%.*s': the tensor name pattern is empty", static_cast<int>(arg.size()), arg.data());
  const std::string_view type_name = arg.substr(eq + 1);
  MOE_ASSERT(!type_name.empty(), "--tensor-type '%.*s': the type is missing", static_cast<int>(arg.size()),
             arg.data());
  const std::optional<GgmlType> type = ggml_type_from_name(type_name);
  MOE_ASSERT(type.has_value(), "--tensor-type '%.*s': unknown type '%.*s' (expected a ggml type such as q4_K, q8_0, f16)",
             static_cast<int>(arg.size()), arg.data(), static_cast<int>(type_name.size()), type_name.data());
  MOE_ASSERT(any_computable ? ggml_type_traits(*type).can_dequantize : quantize_supported(*type),
             "--tensor-type '%.*s': moe.cpp cannot %s %s", static_cast<int>(arg.size()), arg.data(),
             any_computable ? "compute with" : "quantize to", ggml_type_name(*type));
  TypeOverride o;
  o.pattern.assign(arg.substr(0, eq));
  for (char& c : o.pattern) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  o.type = *type;
  return o;
}

std::vector<int64_t> gguf_trimmed_shape(const std::vector<int64_t>& shape) {
  std::vector<int64_t> out = shape;
  while (out.size() > 1 && out.back() == 1) out.pop_back();
  if (out.empty()) out.push_back(1);
  return out;
}

bool tensor_allows_quantization(std::string_view name, const std::vector<int64_t>& shape) {
  if (gguf_trimmed_shape(shape).size() < 2) return false;  // only matrices and expert stacks
  const size_t n = name.size();
  if (n < 6 || name.substr(n - 6) != "weight") return false;  // biases, exp_probs_b, ...
  static constexpr std::string_view kKeep[] = {
      "_norm.weight",           // norms
      "ffn_gate_inp.weight",    // MoE routers
      "ffn_gate_tid2eid.weight",
      "altup", "laurel", "per_layer_model_proj",
      "ssm_conv1d", "shortconv.conv.weight",
      "indexer.k_proj.weight", "indexer.q_proj.weight",
      "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight",
      "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight",
      "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight",
      "time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight",
      "attn_rel_b.weight",
      ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos", ".patch_embd", ".patch_merger",
      "a.rvq.codebook", "mm.a.code_embd",
  };
  for (std::string_view k : kKeep)
    if (contains(name, k)) return false;
  // Positional embeddings and token types (BERT-style models).
  if (name == "position_embd.weight" || name == "token_types.weight") return false;
  return true;
}

std::vector<size_t> llama_tensor_order(const std::vector<std::string>& names) {
  std::vector<size_t> order(names.size());
  std::vector<int> layer(names.size());
  for (size_t i = 0; i < names.size(); ++i) {
    order[i] = i;
    layer[i] = layer_of(names[i]).value_or(-1);
  }
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (layer[a] != layer[b]) return layer[a] < layer[b];
    return names[a] < names[b];
  });
  return order;
}

QuantPlan plan_tensor_types(const PlanModel& model, const std::vector<PlanTensor>& tensors, const PlanOptions& opts) {
  MOE_ASSERT(file_type_supported(opts.file_type), "file type %s is not supported (supported: %s)",
             file_type_name(opts.file_type), supported_file_type_names().c_str());
  std::vector<std::pair<std::regex, GgmlType>> patterns;
  for (const TypeOverride& o : opts.overrides) {
    try {
      patterns.emplace_back(std::regex(o.pattern), o.type);
    } catch (const std::regex_error& e) {
      throw_error("--tensor-type pattern '%s' is not a valid regular expression: %s", o.pattern.c_str(), e.what());
    }
  }

  RuleState qs{model, opts.file_type};
  qs.has_imatrix = opts.has_imatrix;
  qs.n_ffn = static_cast<int>(model.n_layer);
  std::vector<std::string> names;
  names.reserve(tensors.size());
  for (const PlanTensor& t : tensors) {
    MOE_ASSERT(!t.shape.empty(), "tensor '%s' has no dimensions", t.name.c_str());
    names.push_back(t.name);
    const Category c = category_of(t.name);
    if (is_attn_v_like(c)) ++qs.n_attention_wv;
    if (c == Category::Output) qs.tied_embeddings = false;
  }

  const GgmlType default_type = file_type_default_tensor_type(opts.file_type);
  QuantPlan plan;
  plan.types.resize(tensors.size());
  plan.fell_back.assign(tensors.size(), false);
  plan.requires_imatrix.assign(tensors.size(), false);
  for (size_t i : llama_tensor_order(names)) {
    const PlanTensor& t = tensors[i];
    GgmlType type = t.type;
    if (tensor_allows_quantization(t.name, t.shape)) {
      type = default_type;
      // F32 / F16 / BF16 files take no mixture, overrides or fallbacks.
      if (is_quantized(default_type)) {
        bool manual = false;
        for (const auto& [re, override_type] : patterns) {
          if (std::regex_search(t.name, re)) {
            type = override_type;
            manual = true;
            break;
          }
        }
        if (!manual && !opts.pure) type = mixture_type(qs, type, t, category_of(t.name));
        bool fell_back = false;
        type = fallback_type(t, type, &fell_back);
        if (fell_back) {
          plan.fell_back[i] = true;
          ++plan.n_fallback;
        }
      }
    }
    plan.types[i] = type;
    plan.requires_imatrix[i] = tensor_allows_quantization(t.name, t.shape) &&
                               type_requires_imatrix(t.name, type, opts.file_type);
  }
  return plan;
}

}  // namespace moe
