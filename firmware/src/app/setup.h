// The model's setup: the interpreter on the static tensor arena, validated once (schema version,
// AllocateTensors, tensor types and sizes against the rendered config); afterwards the commands
// run it without further checks.
#ifndef PICOTFLM_APP_SETUP_H_
#define PICOTFLM_APP_SETUP_H_

#include <stddef.h>
#include <stdint.h>

#include "board.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#if PICOTFLM_FAST_KERNELS
#include "kernels/picotflm_kernels.h"
#endif

namespace app {

// The interpreter set up last (nullptr before the first setup and after a failed one).
extern tflite::MicroInterpreter* g_interpreter;
#if PICOTFLM_FAST_KERNELS
extern picotflm::PlannedMemoryPlanner g_planner;  // outside the arena: the arena keeps only TFLM's allocator
#endif
// Variants (model_data.h): the one set up now; every request but `variants`/`select`/`auto` uses it.
extern int g_variant;
extern bool g_ready;          // the last setup succeeded
extern size_t g_arena_limit;  // bytes of the static arena the last setup could use
extern size_t g_arena_used;
extern uint64_t g_last_setup_cycles;  // what the last setup (a switch) took
extern uint64_t g_last_setup_us;
extern bool g_setup_failed;

// Registers the model's operators with the resolver (once, at boot); false when that failed.
bool register_ops();

// Sets up (or sets up again) the interpreter for g_variant within `limit` bytes of the static arena,
// timed (g_last_setup_*). false with setup_error() saying why when it fails.
bool setup(size_t limit);

// Why the last setup failed, or "".
const char* setup_error();

struct Timing {
  uint64_t cycles;
  uint64_t us;
  bool ok;
};

// One Invoke of the interpreter set up now, timed.
inline Timing invoke_timed() {
  uint64_t t0 = board_time_us();
  uint64_t c0 = board_cycles();
  bool ok = g_interpreter->Invoke() == kTfLiteOk;
  uint64_t c1 = board_cycles();
  uint64_t t1 = board_time_us();
  return {c1 - c0, t1 - t0, ok};
}

}  // namespace app

#endif  // PICOTFLM_APP_SETUP_H_
