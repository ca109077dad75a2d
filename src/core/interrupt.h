// Cooperative cancellation on SIGINT / SIGTERM for long-running tools.
//
// A converter or quantizer must never leave a half-written file behind. The
// handler only records the signal; the work loops call throw_if_interrupted()
// between chunks, the exception unwinds through GgufWriter's destructor, which
// removes the temporary file and leaves any existing output untouched. A
// second signal while the first is still being honoured ends the process at
// once with the conventional 128+signal status (the temporary file may then
// remain; the target is still untouched because it is only ever renamed).
#pragma once

namespace moe {

// Installs the handlers for SIGINT and SIGTERM (idempotent).
void install_interrupt_handler();

// The signal received (SIGINT, SIGTERM) or 0.
int interrupt_signal();

// Throws moe::Error("interrupted by SIGINT") once a signal has arrived.
// Test-only: with env MOE_TEST_SLOW_MS=N set, each call first sleeps N ms.
void throw_if_interrupted();

}  // namespace moe
