// The JSON record of one generation, shared by `moe --json` (one-shot) and
// `moe --batch` (one record per request), so both print the same fields.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "runtime/generate.h"


namespace moe {

// {text, prompt_tokens, generated_tokens, finish_reason, seed,
//  timings: {prompt_s, generation_s, prompt_tok_per_s, generation_tok_per_s}}
nlohmann::json generate_result_json(const GenerateResult& r, uint64_t seed);

// One line of output: invalid UTF-8 in generated text becomes U+FFFD rather
// than an exception (a model may stop in the middle of a character).
std::string json_line(const nlohmann::json& j);

}  // namespace moe
