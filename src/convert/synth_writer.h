// What moe-synth's model makers share: the tensors of a synthetic file
// (name, shape, what they hold) and the writer that gives them
// llama-quantize's types and valid random contents (synth_model.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "convert/quantize_plan.h"
#include "convert/synth_model.h"
#include "convert/tensor_layout.h"
#include "convert/deepseek2_gguf_layout.h"  // GgufKvList
#include "gguf/gguf_writer.h"

namespace moe {

using SynthRole = LayoutRole;
using SynthTensor = LayoutTensor;

// Writes kv and the tensors (in the order given) to o.out; types from
// llama-quantize's plan for pm and o.file_type.
SynthReport write_synthetic(const SynthOptions& o, const GgufKvList& kv, const std::vector<SynthTensor>& tensors,
                            const PlanModel& pm, int64_t hidden, int64_t n_experts);

// DeepSeek-V4 shapes (synth_deepseek4.cpp): "v4-flash", "v4-pro", or a
// config.json whose architectures name DeepseekV4ForCausalLM.
bool synth_is_deepseek4(const std::string& config);
SynthReport synthesize_deepseek4(const SynthOptions& o);

}  // namespace moe
