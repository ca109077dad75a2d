// The built-in default model (models/tiny-kjv-dsv3.Q4_K_M.gguf, trained by
// scripts/train-tiny-model/) is a real DeepSeek-V3: sigmoid gating with a
// learned correction bias, group-limited routing, the MTP module kept, and
// weights that learned English: on verses of a book held out of training it
// must predict far better than a unigram model of the training text (PPL 411)
// or a random model (PPL in the thousands).
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "gguf/gguf_reader.h"
#include "model/deepseek2.h"
#include "runtime/perplexity.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"

using namespace moe;

namespace {
const std::string kDefaultModel = std::string(MOE_MODELS_DIR) + "/tiny-kjv-dsv3.Q4_K_M.gguf";
}

TEST_CASE("default model: DeepSeek-V3 routing and the MTP module are in the file") {
  const GgufFile f = GgufFile::open(kDefaultModel);
  CHECK(f.get_string("general.architecture") == "deepseek2");
  CHECK(f.get_u32_opt("deepseek2.expert_gating_func") == 2u);  // sigmoid
  CHECK(f.get_u32_opt("deepseek2.expert_count") == 16u);
  CHECK(f.get_u32_opt("deepseek2.expert_used_count") == 2u);
  CHECK(f.get_u32_opt("deepseek2.expert_group_count") == 4u);
  CHECK(f.get_u32_opt("deepseek2.expert_group_used_count") == 2u);
  REQUIRE(f.get_u32_opt("deepseek2.nextn_predict_layers") == 1u);
  const uint32_t n_layer_all = *f.get_u32_opt("deepseek2.block_count");
  const std::string mtp = "blk." + std::to_string(n_layer_all - 1) + ".nextn.";
  for (const char* t : {"eh_proj.weight", "enorm.weight", "hnorm.weight", "shared_head_norm.weight"})
    CHECK_MESSAGE(f.find_tensor(mtp + t) != nullptr, (mtp + t));

  // The correction bias was learned (DeepSeek-V3 §2.1.2), not left at zero.
  const GgufTensorInfo& bias = f.tensor("blk.1.exp_probs_b.bias");
  REQUIRE(bias.type == GgmlType::F32);
  const auto* b = reinterpret_cast<const float*>(bias.data);
  float spread = 0.0f;
  for (int64_t i = 1; i < bias.shape[0]; ++i) spread = std::max(spread, std::fabs(b[i] - b[0]));
  CHECK(spread > 1e-3f);
}

TEST_CASE("default model: held-out King James text is predicted far better than by a unigram model") {
  auto model = Deepseek2Model::load(kDefaultModel);
  const Tokenizer tok = Tokenizer::from_gguf(model->file());
  std::ifstream in(test::local_fixture("kjv-heldout-ruth.txt"));
  std::stringstream ss;
  ss << in.rdbuf();
  const std::vector<int32_t> ids = tok.encode(ss.str(), true, false);
  const int64_t n_ctx = 256, n_vocab = model->config().vocab_size;
  REQUIRE(static_cast<int64_t>(ids.size()) >= 2 * n_ctx);

  // llama-perplexity's scoring: chunks of n_ctx from an empty cache, the
  // second half of each chunk scored.
  Deepseek2Session session(*model, n_ctx, n_ctx, 2);
  std::vector<float> logits(static_cast<size_t>(n_ctx * n_vocab));
  NllSums sums;
  for (size_t c = 0; (c + 1) * n_ctx <= ids.size(); ++c) {
    session.reset();
    session.forward(&ids[c * n_ctx], n_ctx, logits.data(), true);
    for (int64_t j = n_ctx / 2; j + 1 < n_ctx; ++j)
      sums.add(token_nll(&logits[static_cast<size_t>(j * n_vocab)], n_vocab, ids[c * n_ctx + j + 1]));
  }
  MESSAGE("held-out Ruth 1: PPL " << sums.ppl() << " over " << sums.count << " tokens");
  CHECK(sums.ppl() > 1.0);
  CHECK(sums.ppl() < 40.0);  // 22.2 for the committed model; 59.5 after 100 steps
}
