// Loading a deepseek2 file fails loudly, naming the key or tensor with what
// was expected and found: wrong shapes, missing tensors, unsupported types
// and hyper-parameters.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>

#include "gguf/gguf_reader.h"
#include "gguf/gguf_writer.h"
#include "model/deepseek2.h"
#include "test_util.h"

using namespace moe;

namespace {

struct TensorEdit {
  std::string name;
  GgmlType type;
  std::vector<int64_t> shape;
  bool drop = false;
};

// Copies the committed tiny-dsv3 fixture with edits to metadata and tensors.
// Tensor data is written as zeros of the edited size.
std::string edited_copy(const std::function<void(GgufWriter&)>& edit_meta,
                        const std::function<void(TensorEdit&)>& edit_tensor) {
  const GgufFile in = GgufFile::open(test::local_fixture("tiny-dsv3.Q4_K_M.gguf"));
  const std::string out = test::temp_dir() + "/edited.gguf";
  GgufWriter w(out, in.alignment());
  for (const auto& kv : in.metadata()) w.set(kv.key, kv.value);
  edit_meta(w);
  for (const auto& t : in.tensors()) {
    TensorEdit e{t.name, t.type, t.shape};
    edit_tensor(e);
    if (!e.drop) w.add_tensor(e.name, e.type, e.shape);
  }
  w.begin();
  for (size_t i = 0; i < w.n_tensors(); ++i) {
    std::vector<uint8_t> zeros(w.tensor_nbytes(i));
    w.write_tensor_data(zeros.data(), zeros.size());
  }
  w.finish();
  return out;
}

void no_meta(GgufWriter&) {}
void no_tensor(TensorEdit&) {}

}  // namespace

TEST_CASE("model load: the committed fixture loads and describes itself") {
  auto m = Deepseek2Model::load(test::local_fixture("tiny-dsv3.Q4_K_M.gguf"));
  const auto& c = m->config();
  CHECK(c.hidden_size == 256);
  CHECK(c.num_hidden_layers == 3);
  CHECK(c.q_lora_rank == 128);
  CHECK(c.kv_lora_rank == 128);
  CHECK(c.qk_nope_head_dim == 64);
  CHECK(c.qk_rope_head_dim == 32);
  CHECK(c.v_head_dim == 64);
  CHECK(c.n_routed_experts == 16);
  CHECK(c.num_experts_per_tok == 4);
  CHECK(c.n_group == 4);
  CHECK(c.topk_group == 2);
  CHECK(c.scoring_func == ScoringFunc::kSigmoid);
  CHECK(c.norm_topk_prob);
  CHECK(c.routed_scaling_factor == 2.5f);
  CHECK(c.rope_scaling == RopeScaling::kYarn);
  CHECK(c.mscale_all_dim == doctest::Approx(1.0f));
  // YaRN: logits scaled by (0.1 ln 40 + 1)^2 / sqrt(96); rope cos/sin unscaled.
  CHECK(c.softmax_scale() == doctest::Approx(std::pow(0.1 * std::log(40.0) + 1.0, 2) / std::sqrt(96.0)).epsilon(1e-6));
  CHECK(c.rope_mscale() == doctest::Approx(1.0f));
  CHECK(std::holds_alternative<MoeWeights>(m->weights().layers[1].ffn));
  CHECK(std::holds_alternative<FfnWeights>(m->weights().layers[0].ffn));
  CHECK_FALSE(std::get<MoeWeights>(m->weights().layers[1].ffn).score_bias.empty());
}

TEST_CASE("model load: a tensor of the wrong shape names both shapes") {
  const std::string p = edited_copy(no_meta, [](TensorEdit& e) {
    if (e.name == "blk.1.attn_kv_a_mqa.weight") e.shape = {256, 128};
  });
  CHECK_THROWS_WITH(Deepseek2Model::load(p),
                    doctest::Contains("tensor 'blk.1.attn_kv_a_mqa.weight': expected [256, 160], got [256, 128]"));
}

TEST_CASE("model load: a missing tensor is named") {
  const std::string p = edited_copy(no_meta, [](TensorEdit& e) { e.drop = e.name == "blk.2.ffn_up_exps.weight"; });
  CHECK_THROWS_WITH(Deepseek2Model::load(p), doctest::Contains("tensor 'blk.2.ffn_up_exps.weight' is missing"));
}

TEST_CASE("model load: a tensor type we cannot compute with is refused clearly") {
  const std::string p = edited_copy(no_meta, [](TensorEdit& e) {
    if (e.name == "blk.1.ffn_gate_exps.weight") e.type = GgmlType::TQ2_0;  // ternary: not computed with yet
  });
  CHECK_THROWS_WITH(Deepseek2Model::load(p), doctest::Contains("blk.1.ffn_gate_exps.weight' has type tq2_0"));
}

TEST_CASE("model load: unsupported or inconsistent hyper-parameters stop the load") {
  SUBCASE("architecture") {
    const std::string p = edited_copy([](GgufWriter& w) { w.set("general.architecture", GgufValue::string("llama")); },
                                      no_tensor);
    CHECK_THROWS_WITH(Deepseek2Model::load(p), doctest::Contains("architecture 'llama' is not supported"));
  }
  SUBCASE("gating function") {
    const std::string p =
        edited_copy([](GgufWriter& w) { w.set("deepseek2.expert_gating_func", GgufValue::u32(7)); }, no_tensor);
    CHECK_THROWS_WITH(Deepseek2Model::load(p), doctest::Contains("expert_gating_func = 7"));
  }
  SUBCASE("rope scaling") {
    const std::string p =
        edited_copy([](GgufWriter& w) { w.set("deepseek2.rope.scaling.type", GgufValue::string("longrope")); }, no_tensor);
    CHECK_THROWS_WITH(Deepseek2Model::load(p), doctest::Contains("'longrope' is not supported"));
  }
  SUBCASE("groups") {
    const std::string p =
        edited_copy([](GgufWriter& w) { w.set("deepseek2.expert_group_count", GgufValue::u32(3)); }, no_tensor);
    CHECK_THROWS_WITH(Deepseek2Model::load(p), doctest::Contains("multiple of expert_group_count"));
  }
  SUBCASE("a key of the wrong type") {
    const std::string p =
        edited_copy([](GgufWriter& w) { w.set("deepseek2.expert_count", GgufValue::string("16")); }, no_tensor);
    CHECK_THROWS_WITH(Deepseek2Model::load(p), doctest::Contains("'deepseek2.expert_count': expected uint32, found string"));
  }
  SUBCASE("a missing key") {
    const std::string p = edited_copy([](GgufWriter& w) { w.remove("deepseek2.attention.kv_lora_rank"); }, no_tensor);
    CHECK_THROWS_WITH(Deepseek2Model::load(p), doctest::Contains("'deepseek2.attention.kv_lora_rank' is missing"));
  }
}

TEST_CASE("model load: tied embeddings use token_embd as the output head") {
  const std::string p = edited_copy(no_meta, [](TensorEdit& e) { e.drop = e.name == "output.weight"; });
  auto m = Deepseek2Model::load(p);
  CHECK(m->weights().output.data == m->weights().token_embd.data);
}
