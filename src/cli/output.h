// Writing to stdout so that a full disk or a closed pipe is an error, not a
// silent exit 0: every write is flushed and checked (answers stream to
// scripts that may stop reading).
#pragma once

#include <string_view>

namespace moe {

// Writes and flushes; throws moe::Error "cannot write to standard output: ..."
void write_stdout(std::string_view text);

// The prompt limit as users read it: a prompt that fills the context leaves
// no room to generate. Throws naming both sizes; `hint` ends the message.
void require_prompt_fits(size_t n_prompt, long long n_ctx, const char* hint);

}  // namespace moe
