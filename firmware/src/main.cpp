// picotflm firmware: set up the rendered model once, validate it, then answer the host's requests
// (docs/protocol.md) with what the board measures about itself.
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <new>
#include <type_traits>

#include "board.h"
#include "crc32.h"
#include "golden_data.h"
#include "model_config.h"
#include "model_data.h"
#include "op_resolver.h"
#include "pico/binary_info.h"
#include "protocol.h"
#include "tensorflow/lite/micro/arena_allocator/single_arena_buffer_allocator.h"
#include "tensorflow/lite/micro/memory_planner/greedy_memory_planner.h"
#include "tensorflow/lite/micro/micro_allocator.h"
#include "tensorflow/lite/micro/micro_arena_constants.h"
#include "tensorflow/lite/micro/micro_interpreter.h"
#include "tensorflow/lite/micro/micro_profiler_interface.h"
#include "tensorflow/lite/schema/schema_generated.h"

#define PICOTFLM_STR_(x) #x
#define PICOTFLM_STR(x) PICOTFLM_STR_(x)

// What `picotool info` shows about the image: the model it carries and how it was built.
bi_decl(bi_program_description("picotflm: " PICOTFLM_MODEL_NAME " (model " PICOTFLM_MODEL_HASH ") on TFLM, "
                               PICOTFLM_IMAGE_NAME " image"));
bi_decl(bi_program_version_string(PICOTFLM_FW_VERSION));
bi_decl(bi_program_feature("model " PICOTFLM_MODEL_NAME " sha256 " PICOTFLM_MODEL_HASH));
bi_decl(bi_program_feature(PICOTFLM_STR(PICOTFLM_VARIANT_COUNT) " model variant(s), one arena"));
bi_decl(bi_program_feature("tensor arena " PICOTFLM_STR(PICOTFLM_ARENA_SIZE) " bytes"));
// The cores that run (build.emulate_core1: the board image's splits, core 1's jobs run on core 0).
#if defined(PICOTFLM_CORE1_ON_CORE0)
#define PICOTFLM_RUNNING_CORES 1
bi_decl(bi_program_feature("image " PICOTFLM_IMAGE_NAME ", 1 core for TFLM (core 1's jobs on core 0), "
                           PICOTFLM_KERNELS_NAME " kernels"));
#else
#define PICOTFLM_RUNNING_CORES PICOTFLM_CORES
bi_decl(bi_program_feature("image " PICOTFLM_IMAGE_NAME ", " PICOTFLM_STR(PICOTFLM_CORES) " core(s) for TFLM, "
                           PICOTFLM_KERNELS_NAME " kernels"));
#endif

// TFLM's log (MicroPrintf) goes here instead of the serial line, which carries only framed replies:
// the last message is kept so a failed setup can say why ("Failed to resize buffer. Requested:
// 11520, available 11128, missing: 392"). Defining these keeps pico-tflmicro's system_setup.o (its
// stdout DebugLog) out of the link.
static char g_tflm_log[160];

extern "C" void DebugLog(const char* format, va_list args) {
  char line[sizeof g_tflm_log];
  int n = vsnprintf(line, sizeof line, format, args);
  if (n <= 0) return;
  for (char* p = line; *p; p++) {
    if (*p == '\n' || *p == '\r') *p = ' ';
  }
  if (g_tflm_log[0] == '\0') memcpy(g_tflm_log, line, sizeof g_tflm_log);  // the first message is the cause
}

extern "C" int DebugVsnprintf(char* buffer, size_t buf_size, const char* format, va_list vlist) {
  return vsnprintf(buffer, buf_size, format, vlist);
}

namespace {

alignas(16) uint8_t g_tensor_arena[PICOTFLM_ARENA_SIZE];

// TFLM places its own allocator, memory planner and MicroAllocator at the top of the arena when the
// interpreter is constructed, and does not check that they fit (a placement new on nullptr follows):
// below this many bytes the interpreter is not constructed at all. Each object may cost its
// alignment in padding; the arena start is 16-byte aligned already.
constexpr size_t kArenaFloor = tflite::MicroArenaBufferAlignment() +
                               sizeof(tflite::SingleArenaBufferAllocator) +
                               alignof(tflite::SingleArenaBufferAllocator) +
                               sizeof(tflite::GreedyMemoryPlanner) + alignof(tflite::GreedyMemoryPlanner) +
                               sizeof(tflite::MicroAllocator) + alignof(tflite::MicroAllocator);

// The output tensor's element type, for top-1 and the differences of `golden` (raw bytes are compared
// for `exact` whatever the type).
template <TfLiteType T>
struct Element {
  static_assert(T == kTfLiteInt8, "PICOTFLM_OUTPUT_TYPE must be kTfLiteInt8, kTfLiteUInt8, kTfLiteInt16 or kTfLiteFloat32");
  using type = int8_t;
};
template <>
struct Element<kTfLiteUInt8> {
  using type = uint8_t;
};
template <>
struct Element<kTfLiteInt16> {
  using type = int16_t;
};
template <>
struct Element<kTfLiteFloat32> {
  using type = float;
};
using OutT = Element<PICOTFLM_OUTPUT_TYPE>::type;
constexpr int kOutputElements = PICOTFLM_OUTPUT_BYTES / (int)sizeof(OutT);

OutT output_element(const uint8_t* raw, int i) {
  OutT v;
  memcpy(&v, raw + i * sizeof(OutT), sizeof v);
  return v;
}

int element_diff(OutT a, OutT b) {
  if constexpr (std::is_integral<OutT>::value) {
    long d = (long)a - (long)b;
    return (int)(d < 0 ? -d : d);
  } else {  // float outputs: the difference rounded up to a whole number
    float d = a > b ? a - b : b - a;
    int di = (int)d;
    return (float)di < d ? di + 1 : di;
  }
}

// Per-op timing: TFLM calls BeginEvent/EndEvent around every operator when a profiler is attached.
class OpProfiler : public tflite::MicroProfilerInterface {
 public:
  static constexpr int kMax = PICOTFLM_OP_COUNT + 4;
  bool enabled = false;
  int count = 0;
  // One op's time fits 32 bits (2^32 cycles is 34 s at 125 MHz): each slot holds the start until the
  // op ends, then the difference (12 bytes an op instead of 36).
  const char* tag[kMax];
  uint32_t cycles[kMax];
  uint32_t us[kMax];

  uint32_t BeginEvent(const char* t) override {
    if (!enabled || count >= kMax) return kMax;
    tag[count] = t;
    us[count] = (uint32_t)board_time_us();
    cycles[count] = (uint32_t)board_cycles();
    return (uint32_t)count++;
  }
  void EndEvent(uint32_t handle) override {
    if (handle >= (uint32_t)kMax) return;
    const uint32_t c = (uint32_t)board_cycles();
    cycles[handle] = c - cycles[handle];
    us[handle] = (uint32_t)board_time_us() - us[handle];
  }
};

PicotflmOpResolver g_resolver;
bool g_ops_ok = false;
OpProfiler g_profiler;
alignas(tflite::MicroInterpreter) uint8_t g_interpreter_storage[sizeof(tflite::MicroInterpreter)];
tflite::MicroInterpreter* g_interpreter = nullptr;
#if PICOTFLM_FAST_KERNELS
picotflm::PlannedMemoryPlanner g_planner;  // outside the arena: the arena keeps only TFLM's allocator
#endif
bool g_ready = false;
size_t g_arena_limit = PICOTFLM_ARENA_SIZE;
size_t g_arena_used = 0;
// Why the last setup failed, or "". The text is kept in the tensor arena, which nothing uses once a
// setup has failed (fail_setup destroys the interpreter first, and the next setup starts afresh):
// 256 bytes of static RAM fewer than a buffer of its own.
constexpr size_t kSetupErrorMax = PICOTFLM_ARENA_SIZE < 256 ? PICOTFLM_ARENA_SIZE : 256;
bool g_setup_failed = false;
const char* setup_error() { return g_setup_failed ? reinterpret_cast<const char*>(g_tensor_arena) : ""; }

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

// Variants (model_data.h): the one set up now; every request but `variants`/`select`/`auto` uses it.
// The automatic policy (`policy`, `auto`) runs variant 0 first and the next one while the top-1
// confidence (or top-1 minus top-2) of the output is below the threshold.
int g_variant = 0;
constexpr bool kSwitching = PICOTFLM_VARIANT_COUNT > 1;
int g_policy_metric = 0;             // 0: confidence, 1: margin
uint32_t g_policy_permille = 0;      // threshold in thousandths; 0: never escalate
uint64_t g_last_setup_cycles = 0;    // what the last setup (a switch) took
uint64_t g_last_setup_us = 0;
#if PICOTFLM_VARIANT_COUNT > 1
// With several variants the frame cannot live in the input tensor: a switch re-plans the arena and
// TFLM overwrites the input during Invoke, but `auto` may have to run the frame again.
alignas(4) uint8_t g_frame_in[PICOTFLM_INPUT_BYTES];
#endif

// Replies stream out through one small chunk buffer ('$', the JSON payload as it is built, then
// "*<crc32>\n"; docs/protocol.md): no reply is ever held whole in RAM.
void write_chunk(void*, const char* data, uint32_t len) { board_write(data, len); }
constexpr uint32_t kReplyChunk = 64;
char g_reply_chunk[kReplyChunk];
const ptf_out_t g_out = {write_chunk, nullptr, g_reply_chunk, kReplyChunk, PTF_PAYLOAD_MAX};
// The reply begun and not yet ended (every begin() ends in send() or send_error()): an error found
// while it is being written (golden's Invoke) ends that reply, whose first bytes may have gone out.
ptf_json_t* g_open = nullptr;
ptf_line_t g_line;
ptf_request_t g_req;

const char* type_name(TfLiteType t) { return TfLiteTypeGetName(t); }

// Set up (or set up again) the interpreter within `limit` bytes of the static arena.
__attribute__((noinline)) bool setup_untimed(size_t limit) {
  g_ready = false;
  g_arena_used = 0;
  g_setup_failed = false;
  if (g_interpreter != nullptr) {
    g_interpreter->~MicroInterpreter();
    g_interpreter = nullptr;
  }
  g_arena_limit = limit;
  if (g_ops_ok) g_tflm_log[0] = '\0';
  if (!g_ops_ok) {
    return fail_setup("registering the model's %d operator kinds failed: %s",
                      kPicotflmOpKinds, g_tflm_log[0] ? g_tflm_log : "no detail from TFLM");
  }
  if (limit < kArenaFloor) {
    return fail_setup("a %u-byte arena cannot even hold TFLM's allocator and planner (%u bytes)", (unsigned)limit,
                      (unsigned)kArenaFloor);
  }
  const tflite::Model* model = tflite::GetModel(g_picotflm_variants[g_variant].data);
  if (model->version() != PICOTFLM_SCHEMA_VERSION || model->version() != TFLITE_SCHEMA_VERSION) {
    return fail_setup("model schema version %lu, this TFLM supports %d",
                      (unsigned long)model->version(), TFLITE_SCHEMA_VERSION);
  }
#if PICOTFLM_FAST_KERNELS
  picotflm::ResetQuantTableCounts();  // count this setup's Prepare calls only
#endif
#if PICOTFLM_FAST_KERNELS
  // picotflm's kernels run an op in place when the rendered plan puts its output over its input.
  g_planner.SetPlan(g_picotflm_variants[g_variant].plan, g_picotflm_variants[g_variant].plan_entries);
  tflite::MicroAllocator* allocator = tflite::MicroAllocator::Create(g_tensor_arena, limit, &g_planner);
  if (allocator == nullptr) {
    return fail_setup("a %u-byte arena cannot hold TFLM's allocator", (unsigned)limit);
  }
  g_interpreter = new (g_interpreter_storage)
      tflite::MicroInterpreter(model, g_resolver, allocator, nullptr, &g_profiler);
#else
  g_interpreter = new (g_interpreter_storage)
      tflite::MicroInterpreter(model, g_resolver, g_tensor_arena, limit, nullptr, &g_profiler);
#endif
  if (g_interpreter->AllocateTensors() != kTfLiteOk) {
    return fail_setup("AllocateTensors failed with a %u-byte arena: %s",
                      (unsigned)limit, g_tflm_log[0] ? g_tflm_log : "no detail from TFLM");
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

bool setup(size_t limit) {
  uint64_t t0 = board_time_us();
  uint64_t c0 = board_cycles();
  bool ok = setup_untimed(limit);
  g_last_setup_cycles = board_cycles() - c0;
  g_last_setup_us = board_time_us() - t0;
  return ok;
}

struct Timing {
  uint64_t cycles;
  uint64_t us;
  bool ok;
};

Timing invoke_timed() {
  uint64_t t0 = board_time_us();
  uint64_t c0 = board_cycles();
  bool ok = g_interpreter->Invoke() == kTfLiteOk;
  uint64_t c1 = board_cycles();
  uint64_t t1 = board_time_us();
  return {c1 - c0, t1 - t0, ok};
}

int top1(const uint8_t* out) {
  int best = 0;
  for (int i = 1; i < kOutputElements; i++) {
    if (output_element(out, i) > output_element(out, best)) best = i;
  }
  return best;
}

// ------------------------------------------------------------------------------- replies
// Not inlined: the commands' stack frames stay small (golden's holds its reply during every Invoke).
__attribute__((noinline)) void send(ptf_json_t* j) {
  ptf_json_end(j);  // a reply past the payload limit ends as error `range`
  g_open = nullptr;
}

__attribute__((noinline)) void send_error(const char* err, const char* msg) {
  if (g_open != nullptr) {  // a reply has begun: it ends as this error
    ptf_json_end_error(g_open, err, msg);
    g_open = nullptr;
    return;
  }
  ptf_error_reply(&g_out, &g_req, err, msg);
}

void begin(ptf_json_t* j, const char* cmd) {
  ptf_json_begin(j, &g_out, 1, cmd, &g_req);
  g_open = j;
}

__attribute__((noinline)) void cmd_info() {
  ptf_json_t j;
  begin(&j, "info");
  ptf_json_int(&j, "proto", PTF_PROTO_VERSION);
  ptf_json_str(&j, "fw", PICOTFLM_FW_VERSION);
  ptf_json_str(&j, "model", PICOTFLM_MODEL_NAME);
  ptf_json_str(&j, "hash", g_picotflm_variants[g_variant].hash);
  ptf_json_int(&j, "variants", PICOTFLM_VARIANT_COUNT);
  ptf_json_int(&j, "variant", g_variant);
  ptf_json_str(&j, "variant_name", g_picotflm_variants[g_variant].name);
  ptf_json_str(&j, "image", PICOTFLM_IMAGE_NAME);
  ptf_json_str(&j, "kernels", PICOTFLM_KERNELS_NAME);
#if PICOTFLM_FAST_KERNELS
  ptf_json_int(&j, "quant_tables_matched", picotflm::QuantTablesMatched());
  ptf_json_int(&j, "quant_tables_missed", picotflm::QuantTablesMissed());
  ptf_json_int(&j, "quant_cache_hits", picotflm::QuantCacheHits());
  ptf_json_int(&j, "threshold_tables", picotflm::ThresholdTablesVerified());
  ptf_json_int(&j, "threshold_tables_rejected", picotflm::ThresholdTablesRejected());
  ptf_json_int(&j, "wide_tables", picotflm::WideTablesMatched());
  ptf_json_int(&j, "plan_entries", g_picotflm_variants[g_variant].plan_entries);
  ptf_json_int(&j, "plan_matched", g_planner.Matched());
  ptf_json_int(&j, "inplace_ops", picotflm::InplaceOps());
  ptf_json_int(&j, "cores_used", picotflm::CoresUsed());
  ptf_json_int(&j, "split_ops", picotflm::SplitOps());
  ptf_json_int(&j, "core1_jobs", (long long)picotflm::Core1Jobs());
#endif
  ptf_json_str(&j, "board", "pico");
  ptf_json_int(&j, "clock_hz", board_clock_hz());
  ptf_json_int(&j, "cores", PICOTFLM_RUNNING_CORES);
#if defined(PICOTFLM_CORE1_ON_CORE0)
  ptf_json_int(&j, "core1_on_core0", 1);
#endif
  ptf_json_int(&j, "arena_size", PICOTFLM_ARENA_SIZE);
  ptf_json_int(&j, "arena_limit", (long long)g_arena_limit);
  ptf_json_int(&j, "input_bytes", PICOTFLM_INPUT_BYTES);
  ptf_json_int(&j, "output_bytes", PICOTFLM_OUTPUT_BYTES);
  ptf_json_int(&j, "golden_count", PICOTFLM_GOLDEN_COUNT);
  ptf_json_str(&j, "status", g_ready ? "ready" : "error");
  ptf_json_str(&j, "setup_error", setup_error());
  send(&j);
}

__attribute__((noinline)) void cmd_mem() {
  uint32_t data = board_data_bytes(), bss = board_bss_bytes(), heap = board_heap_used(), stack = board_stack_peak();
#if PICOTFLM_FAST_KERNELS
  uint32_t stack1 = picotflm::Core1StackPeak(), stack1_size = picotflm::Core1StackSize();
#else
  uint32_t stack1 = 0, stack1_size = 0;
#endif
  ptf_json_t j;
  begin(&j, "mem");
  ptf_json_int(&j, "arena_size", PICOTFLM_ARENA_SIZE);
  ptf_json_int(&j, "arena_limit", (long long)g_arena_limit);
  ptf_json_int(&j, "arena_used", (long long)g_arena_used);
  ptf_json_int(&j, "data_bytes", data);
  ptf_json_int(&j, "bss_bytes", bss);
  ptf_json_int(&j, "heap_used", heap);
  ptf_json_int(&j, "stack_size", board_stack_size());
  ptf_json_int(&j, "stack_peak", stack);
  ptf_json_int(&j, "core1_stack_size", stack1_size);
  ptf_json_int(&j, "core1_stack_peak", stack1);
  ptf_json_int(&j, "ram_total", (long long)data + bss + heap + stack + stack1);
  ptf_json_int(&j, "ram_size", 270336);
  send(&j);
}

// Median of up to kKeep samples (bench n <= kKeep exactly; beyond, of the first kKeep runs).
constexpr uint32_t kKeep = 32;  // 256 B of samples (it was 128: 1 KB of RAM)
uint32_t g_samples_cycles[kKeep];
uint32_t g_samples_us[kKeep];

uint32_t median(uint32_t* v, uint32_t n) {
  for (uint32_t i = 1; i < n; i++) {  // insertion sort: n <= kKeep
    uint32_t x = v[i];
    uint32_t k = i;
    while (k > 0 && v[k - 1] > x) {
      v[k] = v[k - 1];
      k--;
    }
    v[k] = x;
  }
  return n % 2 ? v[n / 2] : (uint32_t)(((uint64_t)v[n / 2 - 1] + v[n / 2]) / 2);
}

__attribute__((noinline)) void cmd_bench(uint32_t runs) {
  TfLiteTensor* in = g_interpreter->input(0);
  uint64_t min_c = UINT64_MAX, max_c = 0, min_u = UINT64_MAX, max_u = 0;
  uint32_t kept = 0;
  for (uint32_t r = 0; r < runs; r++) {
    memcpy(in->data.raw, g_picotflm_golden_inputs[0], PICOTFLM_INPUT_BYTES);  // Invoke overwrites it
    Timing t = invoke_timed();
    if (!t.ok) return send_error("invoke", "Invoke failed during bench");
    if (t.cycles < min_c) min_c = t.cycles;
    if (t.cycles > max_c) max_c = t.cycles;
    if (t.us < min_u) min_u = t.us;
    if (t.us > max_u) max_u = t.us;
    if (kept < kKeep) {
      g_samples_cycles[kept] = (uint32_t)t.cycles;
      g_samples_us[kept] = (uint32_t)t.us;
      kept++;
    }
  }
  ptf_json_t j;
  begin(&j, "bench");
  ptf_json_int(&j, "runs", runs);
  ptf_json_int(&j, "median_of", kept);
  ptf_json_int(&j, "min_us", (long long)min_u);
  ptf_json_int(&j, "median_us", median(g_samples_us, kept));
  ptf_json_int(&j, "max_us", (long long)max_u);
  ptf_json_int(&j, "min_cycles", (long long)min_c);
  ptf_json_int(&j, "median_cycles", median(g_samples_cycles, kept));
  ptf_json_int(&j, "max_cycles", (long long)max_c);
  ptf_json_int(&j, "clock_hz", board_clock_hz());
  send(&j);
}

__attribute__((noinline)) void cmd_profile() {
  TfLiteTensor* in = g_interpreter->input(0);
  memcpy(in->data.raw, g_picotflm_golden_inputs[0], PICOTFLM_INPUT_BYTES);
  g_profiler.count = 0;
  g_profiler.enabled = true;
  Timing t = invoke_timed();
  g_profiler.enabled = false;
  if (!t.ok) return send_error("invoke", "Invoke failed during profile");
  ptf_json_t j;
  begin(&j, "profile");
  ptf_json_open(&j, "ops", '[');
  for (int i = 0; i < g_profiler.count; i++) {
    ptf_json_open(&j, nullptr, '{');
    ptf_json_str(&j, "op", g_profiler.tag[i]);
    ptf_json_int(&j, "us", (long long)g_profiler.us[i]);
    ptf_json_int(&j, "cycles", (long long)g_profiler.cycles[i]);
    ptf_json_close(&j, '}');
  }
  ptf_json_close(&j, ']');
  ptf_json_int(&j, "total_cycles", (long long)t.cycles);
  ptf_json_int(&j, "total_us", (long long)t.us);
  send(&j);
}

struct GoldenResult {
  int exact, top1_agree, max_diff;
  bool ok;
};

__attribute__((noinline)) GoldenResult run_golden(ptf_json_t* j) {
  GoldenResult g = {0, 0, 0, true};
  TfLiteTensor* in = g_interpreter->input(0);
  TfLiteTensor* out = g_interpreter->output(0);
  if (j) ptf_json_open(j, "outputs", '[');
  for (int i = 0; i < PICOTFLM_GOLDEN_COUNT; i++) {
    memcpy(in->data.raw, g_picotflm_golden_inputs[i], PICOTFLM_INPUT_BYTES);
    if (g_interpreter->Invoke() != kTfLiteOk) {
      g.ok = false;
      break;
    }
    const uint8_t* o = (const uint8_t*)out->data.raw;
    const uint8_t* e = g_picotflm_golden_outputs[g_variant * PICOTFLM_GOLDEN_COUNT + i];
    if (memcmp(o, e, PICOTFLM_OUTPUT_BYTES) == 0) g.exact++;
    for (int k = 0; k < kOutputElements; k++) {  // in output units (LSB for integer outputs)
      int d = element_diff(output_element(o, k), output_element(e, k));
      if (d > g.max_diff) g.max_diff = d;
    }
    if (top1(o) == top1(e)) g.top1_agree++;
    if (j) ptf_json_hex(j, nullptr, o, PICOTFLM_OUTPUT_BYTES);
  }
  if (j) ptf_json_close(j, ']');
  return g;
}

__attribute__((noinline)) void cmd_golden() {
  ptf_json_t j;
  begin(&j, "golden");
  GoldenResult g = run_golden(&j);
  if (!g.ok) return send_error("invoke", "Invoke failed on a golden input");
  ptf_json_int(&j, "count", PICOTFLM_GOLDEN_COUNT);
  ptf_json_int(&j, "exact", g.exact);
  ptf_json_int(&j, "max_diff", g.max_diff);
  ptf_json_int(&j, "top1_agree", g.top1_agree);
  send(&j);
}

// Where `load` writes the frame: the input tensor, or with several variants a buffer of its own.
uint8_t* frame_buffer() {
#if PICOTFLM_VARIANT_COUNT > 1
  return g_frame_in;
#else
  return (uint8_t*)g_interpreter->input(0)->data.raw;
#endif
}

__attribute__((noinline)) void cmd_load(const ptf_request_t& r) {
  memcpy(frame_buffer() + r.n, r.data, r.data_len);
  ptf_json_t j;
  begin(&j, "load");
  ptf_json_int(&j, "offset", r.n);
  ptf_json_int(&j, "len", r.data_len);
  send(&j);
}

__attribute__((noinline)) void cmd_infer(const ptf_request_t& r) {
  if (ptf_crc32(0, frame_buffer(), r.n) != r.crc) {
    return send_error("crc", "input bytes do not match the CRC-32: send the frame's loads again");
  }
  if (kSwitching) memcpy(g_interpreter->input(0)->data.raw, frame_buffer(), PICOTFLM_INPUT_BYTES);
  Timing t = invoke_timed();
  if (!t.ok) return send_error("invoke", "Invoke failed");
  const uint8_t* o = (const uint8_t*)g_interpreter->output(0)->data.raw;
  ptf_json_t j;
  begin(&j, "infer");
  ptf_json_hex(&j, "output", o, PICOTFLM_OUTPUT_BYTES);
  ptf_json_int(&j, "top1", top1(o));
  ptf_json_int(&j, "us", (long long)t.us);
  ptf_json_int(&j, "cycles", (long long)t.cycles);
  send(&j);
}

// ------------------------------------------------------------------------------ variants
__attribute__((noinline)) void cmd_variants() {
  ptf_json_t j;
  begin(&j, "variants");
  ptf_json_int(&j, "count", PICOTFLM_VARIANT_COUNT);
  ptf_json_int(&j, "selected", g_variant);
  ptf_json_open(&j, "variants", '[');
  for (int i = 0; i < PICOTFLM_VARIANT_COUNT; i++) {
    const PicotflmVariant& v = g_picotflm_variants[i];
    ptf_json_open(&j, nullptr, '{');
    ptf_json_int(&j, "index", i);
    ptf_json_str(&j, "name", v.name);
    ptf_json_str(&j, "hash", v.hash);
    ptf_json_int(&j, "model_bytes", v.size);
    ptf_json_int(&j, "macs", v.macs);
    ptf_json_int(&j, "ops", v.op_count);
    ptf_json_close(&j, '}');
  }
  ptf_json_close(&j, ']');
  ptf_json_str(&j, "policy_metric", g_policy_metric ? "margin" : "confidence");
  ptf_json_int(&j, "policy_permille", g_policy_permille);
  send(&j);
}

// Set up variant `v` in the arena (a switch); false with setup_error() saying why when that fails.
bool switch_to(int v) {
  g_variant = v;
  return setup(g_arena_limit);
}

__attribute__((noinline)) void cmd_select(uint32_t v) {
  if (v >= (uint32_t)PICOTFLM_VARIANT_COUNT) {
    char msg[112];
    snprintf(msg, sizeof msg, "variant %lu does not exist: this firmware has %d (0 to %d; `variants` lists them)",
             (unsigned long)v, PICOTFLM_VARIANT_COUNT, PICOTFLM_VARIANT_COUNT - 1);
    return send_error("range", msg);
  }
  if (!switch_to((int)v)) return send_error("setup", g_setup_failed ? setup_error() : "setup failed");
  ptf_json_t j;
  begin(&j, "select");
  ptf_json_int(&j, "variant", g_variant);
  ptf_json_str(&j, "name", g_picotflm_variants[g_variant].name);
  ptf_json_str(&j, "hash", g_picotflm_variants[g_variant].hash);
  ptf_json_int(&j, "arena_used", (long long)g_arena_used);
  ptf_json_int(&j, "switch_cycles", (long long)g_last_setup_cycles);
  ptf_json_int(&j, "switch_us", (long long)g_last_setup_us);
  send(&j);
}

__attribute__((noinline)) void cmd_policy(const ptf_request_t& r) {
  g_policy_metric = (int)r.n;
  g_policy_permille = r.threshold;
  ptf_json_t j;
  begin(&j, "policy");
  ptf_json_str(&j, "metric", g_policy_metric ? "margin" : "confidence");
  ptf_json_int(&j, "permille", g_policy_permille);
  send(&j);
}

// The policy's score of an output: the top-1 dequantized value (confidence), or top-1 minus top-2
// (margin). In double, as the host simulation computes it: (q - zero_point) * scale is exact there.
double policy_score(const uint8_t* out, const PicotflmVariant& v) {
  double best = -1e300, second = -1e300;
  for (int k = 0; k < kOutputElements; k++) {
    double p = (double)output_element(out, k);
    if (std::is_integral<OutT>::value) p = (p - v.output_zero_point) * (double)v.output_scale;
    if (p > best) {
      second = best;
      best = p;
    } else if (p > second) {
      second = p;
    }
  }
  if (g_policy_metric == 0 || kOutputElements < 2) return best;
  return best - second;
}

__attribute__((noinline)) void cmd_auto(const ptf_request_t& r) {
  if (ptf_crc32(0, frame_buffer(), r.n) != r.crc) {
    return send_error("crc", "input bytes do not match the CRC-32: send the frame's loads again");
  }
  uint64_t t0 = board_time_us();
  uint64_t c0 = board_cycles();
  uint64_t switch_cycles = 0, switch_us = 0, invoke_cycles = 0;
  int switches = 0, escalations = 0;
  double threshold = g_policy_permille / 1000.0;
  double score = 0.0;
  const uint8_t* o = nullptr;
  for (int level = 0;; level++) {
    if (g_variant != level || !g_ready) {
      if (!switch_to(level)) return send_error("setup", g_setup_failed ? setup_error() : "setup failed");
      switch_cycles += g_last_setup_cycles;
      switch_us += g_last_setup_us;
      switches++;
    }
    if (kSwitching) memcpy(g_interpreter->input(0)->data.raw, frame_buffer(), PICOTFLM_INPUT_BYTES);
    Timing t = invoke_timed();
    if (!t.ok) return send_error("invoke", "Invoke failed");
    invoke_cycles += t.cycles;
    o = (const uint8_t*)g_interpreter->output(0)->data.raw;
    score = policy_score(o, g_picotflm_variants[level]);
    if (!(score < threshold) || level + 1 >= PICOTFLM_VARIANT_COUNT) break;
    escalations++;
  }
  uint64_t c1 = board_cycles();
  uint64_t t1 = board_time_us();
  ptf_json_t j;
  begin(&j, "auto");
  ptf_json_hex(&j, "output", o, PICOTFLM_OUTPUT_BYTES);
  ptf_json_int(&j, "top1", top1(o));
  ptf_json_int(&j, "variant", g_variant);
  ptf_json_int(&j, "escalations", escalations);
  ptf_json_int(&j, "score_ppm", (long long)(score * 1e6 + (score < 0 ? -0.5 : 0.5)));
  ptf_json_int(&j, "switches", switches);
  ptf_json_int(&j, "invoke_cycles", (long long)invoke_cycles);
  ptf_json_int(&j, "switch_cycles", (long long)switch_cycles);
  ptf_json_int(&j, "switch_us", (long long)switch_us);
  ptf_json_int(&j, "cycles", (long long)(c1 - c0));
  ptf_json_int(&j, "us", (long long)(t1 - t0));
  send(&j);
}

__attribute__((noinline)) void cmd_arena(uint32_t bytes) {
  if (bytes > PICOTFLM_ARENA_SIZE) {
    char msg[96];
    snprintf(msg, sizeof msg, "the firmware was compiled with a %u-byte arena", (unsigned)PICOTFLM_ARENA_SIZE);
    return send_error("range", msg);
  }
  size_t limit = bytes ? bytes : PICOTFLM_ARENA_SIZE;
  bool alloc_ok = setup(limit);
  bool invoke_ok = false;
  bool golden_exact = false;
  if (alloc_ok) {
    GoldenResult g = run_golden(nullptr);
    invoke_ok = g.ok;
    golden_exact = g.ok && g.exact == PICOTFLM_GOLDEN_COUNT;
  }
  ptf_json_t j;
  begin(&j, "arena");
  ptf_json_int(&j, "arena_limit", (long long)limit);
  ptf_json_bool(&j, "alloc_ok", alloc_ok);
  ptf_json_int(&j, "arena_used", (long long)g_arena_used);
  ptf_json_bool(&j, "invoke_ok", invoke_ok);
  ptf_json_bool(&j, "golden_exact", golden_exact);
  send(&j);
}

__attribute__((noinline)) void handle(const ptf_request_t& r) {
  switch (r.cmd) {
    case PTF_CMD_NONE:
      return;
    case PTF_CMD_ERROR:
      return send_error(r.err, r.msg);
    case PTF_CMD_INFO:
      return cmd_info();
    case PTF_CMD_ARENA:
      return cmd_arena(r.n);
    case PTF_CMD_VARIANTS:
      return cmd_variants();
    case PTF_CMD_SELECT:
      return cmd_select(r.n);
    case PTF_CMD_POLICY:
      return cmd_policy(r);
    default:
      break;
  }
  if (!g_ready) return send_error("setup", g_setup_failed ? setup_error() : "setup failed");
  switch (r.cmd) {
    case PTF_CMD_MEM:
      return cmd_mem();
    case PTF_CMD_BENCH:
      return cmd_bench(r.n);
    case PTF_CMD_PROFILE:
      return cmd_profile();
    case PTF_CMD_GOLDEN:
      return cmd_golden();
    case PTF_CMD_LOAD:
      return cmd_load(r);
    case PTF_CMD_INFER:
      return cmd_infer(r);
    case PTF_CMD_AUTO:
      return cmd_auto(r);
    default:
      return send_error("unknown_cmd", "unknown command");
  }
}

}  // namespace

int main() {
  board_stack_paint();
  board_init();
  g_ops_ok = picotflm_register_ops(g_resolver) == kTfLiteOk;
  setup(PICOTFLM_ARENA_SIZE);
  ptf_line_reset(&g_line);
  for (;;) {
    int c = board_read_byte(100000);
    if (c < 0) continue;
    if (ptf_line_feed(&g_line, c)) {
      ptf_parse(g_line.buf, g_line.len, g_line.overflow, PICOTFLM_INPUT_BYTES, &g_req);
      handle(g_req);
      ptf_line_reset(&g_line);
    }
  }
}
