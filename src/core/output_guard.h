// Checks made before a tool does any work, so that its output can never
// destroy its input and a bad output path fails at once, not at the rename
// after minutes of work.
#pragma once

#include <string>

namespace moe {

// Throws when writing `output` would replace `input`: the same file (device
// and inode, so a different spelling or a hard link is caught too).
void refuse_output_over_input(const std::string& output, const std::string& input);

// Throws when a tool's second output `second` (named by `flag`) is its
// output `output`: the same path (spelled either way) or the same file.
void refuse_same_outputs(const std::string& output, const std::string& second, const char* flag);

// Throws when `output` is an existing file of the checkpoint directory
// `dir` (config.json, a safetensors shard, a tokenizer file...): anything but
// a .gguf there is the checkpoint's own.
void refuse_output_in_checkpoint(const std::string& output, const std::string& dir);

// Throws unless output's directory exists and this process can create files
// in it, and output itself is not a directory.
void require_writable_output(const std::string& output);

}  // namespace moe
