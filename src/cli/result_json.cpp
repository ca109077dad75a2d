#include "cli/result_json.h"

#include <algorithm>

namespace moe {

nlohmann::json generate_result_json(const GenerateResult& r, uint64_t seed) {
  const auto per_s = [](int64_t n, double s) { return static_cast<double>(n) / std::max(s, 1e-9); };
  nlohmann::json j = {
      {"text", r.text},
      {"prompt_tokens", r.n_prompt},
      {"generated_tokens", r.n_generated},
      {"finish_reason", finish_reason_json(r.finish)},
      {"seed", seed},
      {"timings",
       {{"prompt_s", r.prompt_s},
        {"generation_s", r.gen_s},
        {"prompt_tok_per_s", per_s(r.n_prompt, r.prompt_s)},
        {"generation_tok_per_s", per_s(r.n_generated, r.gen_s)}}},
  };
  if (r.n_verify_steps > 0)
    j["speculative"] = {{"drafted", r.n_drafted}, {"accepted", r.n_accepted}, {"verify_steps", r.n_verify_steps}};
  return j;
}

std::string json_line(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace moe
