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
  bool interactive() const { return interactive_; }

 private:
  bool interactive_;
};

}  // namespace moe
