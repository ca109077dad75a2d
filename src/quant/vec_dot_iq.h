// Dot products of IQ weight rows (not IQ4_NL) with Q8_K activation rows:
// the scalar references.
#pragma once

#include <cstdint>

#include "core/ggml_type.h"

namespace moe {

float vec_dot_iq_row(GgmlType weight_type, const void* w_row, const void* act_row, int64_t n);

}  // namespace moe
