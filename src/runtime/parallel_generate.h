// Continuous batching: many independent requests answered with up to
// session.n_seq() sequences in flight. Each step decodes one token of every
// sequence that is generating and evaluates whole prompt chunks (n_batch
// tokens, as generate() would) of sequences that are reading their prompt, in
// one forward pass: the experts' weights are read once per step for all of
// them, which is where a Mixture-of-Experts model gains from batching. A
// finished sequence frees its slot and the next request enters at once.
//
// A request's answer does not depend on what runs beside it: its prompt is
// cut into the same chunks as alone, its tokens attend to its own slot of
// the cache only, and it has its own sampler (seed, penalties).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "runtime/generate.h"
#include "runtime/inference_session.h"
#include "runtime/sampler.h"
#include "tokenizer/tokenizer.h"

namespace moe {

struct ParallelRequest {
  std::vector<int32_t> prompt;  // non-empty, fits the session's context
  SamplerParams sampling;
  GenerateOptions options;      // options.prompt_chunk: tokens per prompt chunk
  // Prompt tokens [0, shared_prefix) (below the prompt's length) are a
  // section of their own, chunked from 0, and the rest is chunked from
  // there. A section another slot holds (the same tokens, the same length)
  // is copied from its cache instead of evaluated: a system prompt common
  // to many lines is evaluated once. Since the section is cut the same way
  // whether copied or evaluated, the answer is the same either way.
  size_t shared_prefix = 0;
};

// For each prompt, the longest prefix it shares with any other prompt of
// the list, short of its last token: ParallelRequest::shared_prefix for a
// batch, a function of the list alone (so of no scheduling).
std::vector<size_t> shared_prefixes(const std::vector<const std::vector<int32_t>*>& prompts);

// Answers every request, in slots of the session, and calls
// on_done(index, result, seed) as each finishes (in the order they finish).
// Once cancelled() returns true, the answers in flight end as interrupted
// (and are reported) and no further request starts. Returns the number of
// requests that never started.
size_t generate_parallel(InferenceSession& session, const Tokenizer& tok, const std::vector<ParallelRequest>& requests,
                         const std::function<void(size_t, GenerateResult&, uint64_t)>& on_done,
                         const std::function<bool()>& cancelled);

}  // namespace moe
