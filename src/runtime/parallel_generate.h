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
};

// Answers every request, in slots of the session, and calls
// on_done(index, result, seed) as each finishes (in the order they finish).
// Once cancelled() returns true, the answers in flight end as interrupted
// (and are reported) and no further request starts. Returns the number of
// requests that never started.
size_t generate_parallel(InferenceSession& session, const Tokenizer& tok, const std::vector<ParallelRequest>& requests,
                         const std::function<void(size_t, GenerateResult&, uint64_t)>& on_done,
                         const std::function<bool()>& cancelled);

}  // namespace moe
