// See setup.h.
#include "app/setup.h"

#include <stdarg.h>
#include <stdio.h>

#include <new>

#include "app/profile.h"
#include "app/tflm_log.h"
#include "model_config.h"
#include "model_data.h"
#include "op_resolver.h"
#include "tensorflow/lite/micro/arena_allocator/single_arena_buffer_allocator.h"
#include "tensorflow/lite/micro/memory_planner/greedy_memory_planner.h"
#include "tensorflow/lite/micro/micro_allocator.h"
#include "tensorflow/lite/micro/micro_arena_constants.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace app {

tflite::MicroInterpreter* g_interpreter = nullptr;
#if PICOTFLM_FAST_KERNELS
picotflm::PlannedMemoryPlanner g_planner;
#endif
int g_variant = 0;
bool g_ready = false;
size_t g_arena_limit = PICOTFLM_ARENA_SIZE;
size_t g_arena_used = 0;
uint64_t g_last_setup_cycles = 0;
uint64_t g_last_setup_us = 0;
bool g_setup_failed = false;

namespace {

alignas(16) uint8_t g_tensor_arena[PICOTFLM_ARENA_SIZE];

#if PICOTFLM_FAST_KERNELS
// TFLM's arena allocator and MicroAllocator, built here rather than at the top of the arena (where
// MicroAllocator::Create puts them): the arena holds only what the model needs. MicroAllocator's
// constructor is protected; this subclass only opens it.
class StaticMicroAllocator : public tflite::MicroAllocator {
 public:
  StaticMicroAllocator(tflite::SingleArenaBufferAllocator* arena, tflite::MicroMemoryPlanner* planner)
      : tflite::MicroAllocator(arena, planner) {}
  // The virtual destructor names an operator delete, which TFLM's base keeps private; never called
  // (the object lives in static storage and is built over again at each setup).
  static void operator delete(void*) {}
};
alignas(tflite::SingleArenaBufferAllocator) uint8_t g_arena_allocator_storage[sizeof(tflite::SingleArenaBufferAllocator)];
alignas(StaticMicroAllocator) uint8_t g_micro_allocator_storage[sizeof(StaticMicroAllocator)];
constexpr size_t kArenaFloor = tflite::MicroArenaBufferAlignment();
#else
// TFLM places its own allocator, memory planner and MicroAllocator at the top of the arena when the
// interpreter is constructed, and does not check that they fit (a placement new on nullptr follows):
// below this many bytes the interpreter is not constructed at all. Each object may cost its
// alignment in padding; the arena start is 16-byte aligned already.
constexpr size_t kArenaFloor = tflite::MicroArenaBufferAlignment() +
                               sizeof(tflite::SingleArenaBufferAllocator) +
                               alignof(tflite::SingleArenaBufferAllocator) +
                               sizeof(tflite::GreedyMemoryPlanner) + alignof(tflite::GreedyMemoryPlanner) +
                               sizeof(tflite::MicroAllocator) + alignof(tflite::MicroAllocator);
#endif

PicotflmOpResolver g_resolver;
bool g_ops_ok = false;
alignas(tflite::MicroInterpreter) uint8_t g_interpreter_storage[sizeof(tflite::MicroInterpreter)];

// Why the last setup failed is kept in the tensor arena, which nothing uses once a setup has failed
// (fail_setup destroys the interpreter first, and the next setup starts afresh): 256 bytes of static
// RAM fewer than a buffer of its own.
constexpr size_t kSetupErrorMax = PICOTFLM_ARENA_SIZE < 256 ? PICOTFLM_ARENA_SIZE : 256;

// Ends a failed setup: the interpreter destroyed, then the reason written (printf-style). false.
__attribute__((format(printf, 1, 2))) bool fail_setup(const char* format, ...) {
  if (g_interpreter != nullptr) {
    g_interpreter->~MicroInterpreter();
    g_interpreter = nullptr;
  }
  va_list args;
  va_start(args, format);
  vsnprintf(reinterpret_cast<char*>(g_tensor_arena), kSetupErrorMax, format, args);
  va_end(args);
  g_setup_failed = true;
  return false;
}

const char* type_name(TfLiteType t) { return TfLiteTypeGetName(t); }

// TFLM's last log message, or a placeholder when it logged nothing.
const char* tflm_detail() {
  const char* log = tflm_log();
  return log[0] ? log : "no detail from TFLM";
}

__attribute__((noinline)) bool setup_untimed(size_t limit) {
  g_ready = false;
  g_arena_used = 0;
  g_setup_failed = false;
  if (g_interpreter != nullptr) {
    g_interpreter->~MicroInterpreter();
    g_interpreter = nullptr;
  }
  g_arena_limit = limit;
  if (g_ops_ok) tflm_log_clear();
  if (!g_ops_ok) {
    return fail_setup("registering the model's %d operator kinds failed: %s", kPicotflmOpKinds, tflm_detail());
  }
  if (limit < kArenaFloor) {
    return fail_setup("a %u-byte arena is below the %u bytes TFLM takes before any tensor", (unsigned)limit,
                      (unsigned)kArenaFloor);
  }
  const tflite::Model* model = tflite::GetModel(g_picotflm_variants[g_variant].data);
  if (model->version() != PICOTFLM_SCHEMA_VERSION || model->version() != TFLITE_SCHEMA_VERSION) {
    return fail_setup("model schema version %lu, this TFLM supports %d",
                      (unsigned long)model->version(), TFLITE_SCHEMA_VERSION);
  }
#if PICOTFLM_FAST_KERNELS
  picotflm::ResetQuantTableCounts();  // count this setup's Prepare calls only
  picotflm::ResetFlashParams();
  picotflm::ResetOpDataCounts();
  // picotflm's kernels run an op in place when the rendered plan puts its output over its input.
  g_planner.SetPlan(g_picotflm_variants[g_variant].plan, g_picotflm_variants[g_variant].plan_entries);
  auto* arena = new (g_arena_allocator_storage) tflite::SingleArenaBufferAllocator(g_tensor_arena, limit);
  tflite::MicroAllocator* allocator = new (g_micro_allocator_storage) StaticMicroAllocator(arena, &g_planner);
  g_interpreter = new (g_interpreter_storage)
      tflite::MicroInterpreter(model, g_resolver, allocator, nullptr, &g_profiler);
#else
  g_interpreter = new (g_interpreter_storage)
      tflite::MicroInterpreter(model, g_resolver, g_tensor_arena, limit, nullptr, &g_profiler);
#endif
  if (g_interpreter->AllocateTensors() != kTfLiteOk) {
    return fail_setup("AllocateTensors failed with a %u-byte arena: %s", (unsigned)limit, tflm_detail());
  }
  g_arena_used = g_interpreter->arena_used_bytes();
  TfLiteTensor* in = g_interpreter->input(0);
  TfLiteTensor* out = g_interpreter->output(0);
  if (in == nullptr || out == nullptr) {
    return fail_setup("the model has no input or output tensor");
  }
  if (in->type != PICOTFLM_INPUT_TYPE || in->bytes != PICOTFLM_INPUT_BYTES) {
    return fail_setup("input tensor is %s, %u bytes; the rendered config says %s, %u bytes",
                      type_name(in->type), (unsigned)in->bytes, type_name(PICOTFLM_INPUT_TYPE), (unsigned)PICOTFLM_INPUT_BYTES);
  }
  if (out->type != PICOTFLM_OUTPUT_TYPE || out->bytes != PICOTFLM_OUTPUT_BYTES) {
    return fail_setup("output tensor is %s, %u bytes; the rendered config says %s, %u bytes",
                      type_name(out->type), (unsigned)out->bytes, type_name(PICOTFLM_OUTPUT_TYPE), (unsigned)PICOTFLM_OUTPUT_BYTES);
  }
  g_ready = true;
  return true;
}

}  // namespace

bool register_ops() {
  g_ops_ok = picotflm_register_ops(g_resolver) == kTfLiteOk;
  return g_ops_ok;
}

bool setup(size_t limit) {
  uint64_t t0 = board_time_us();
  uint64_t c0 = board_cycles();
  bool ok = setup_untimed(limit);
  g_last_setup_cycles = board_cycles() - c0;
  g_last_setup_us = board_time_us() - t0;
  return ok;
}

const char* setup_error() { return g_setup_failed ? reinterpret_cast<const char*>(g_tensor_arena) : ""; }

}  // namespace app
