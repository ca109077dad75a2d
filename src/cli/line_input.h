// Reading the chat's input: libedit (line editing, history) on a terminal,
// plain lines otherwise; and the Ctrl-C flag the chat polls.
//
// SIGINT only sets a flag. The handler is installed without SA_RESTART, so a
// Ctrl-C at the prompt interrupts the blocking read and read() reports
// `interrupt`; during an answer the generation loop polls the flag.
#pragma once

#include <string>

namespace moe {

// Installs the SIGINT handler (idempotent).
void sigint_install();
bool sigint_pending();
void sigint_clear();

class LineInput {
 public:
  enum class Status { line, eof, interrupt };

  LineInput();  // line editing when stdin and stdout are terminals
  ~LineInput();
  LineInput(const LineInput&) = delete;
  LineInput& operator=(const LineInput&) = delete;

  // One line without its newline. eof: Ctrl-D / end of input; interrupt: Ctrl-C.
  Status read(const char* prompt, std::string& line);
  void add_history(const std::string& entry);
  // True when more input arrives within `ms` milliseconds of a line's end:
  // the rest of a multi-line paste (nobody types a newline and the next key
  // that fast), so the lines belong to one message.
  bool more_pending(int ms) const;
  bool interactive() const { return interactive_; }

 private:
  bool interactive_;
};

}  // namespace moe
