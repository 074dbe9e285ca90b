// See commands.h.
#include "app/commands.h"

#include <stdio.h>
#include <string.h>

#include "app/build_info.h"
#include "app/layers.h"
#include "app/output.h"
#include "app/profile.h"
#include "app/reply.h"
#include "app/setup.h"
#include "app/switching.h"
#include "board.h"
#include "crc32.h"
#include "golden_data.h"
#include "kernels/pk_multicore.h"
#if PICOTFLM_FAST_KERNELS
#include "kernels/flash_params.h"
#include "kernels/op_data.h"
#endif
#include "model_config.h"
#include "model_data.h"

namespace app {
namespace {

#if PICOTFLM_VARIANT_COUNT > 1
// With several variants the frame cannot live in the input tensor: a switch re-plans the arena and
// TFLM overwrites the input during Invoke, but `auto` may have to run the frame again.
alignas(4) uint8_t g_frame_in[PICOTFLM_INPUT_BYTES];
#endif

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
  ptf_json_int(&j, "group_tables", picotflm::GroupTablesMatched());
  ptf_json_int(&j, "params_in_flash", picotflm::FlashParamsUsed());
  ptf_json_int(&j, "params_in_arena", picotflm::FlashParamsCopied());
  ptf_json_int(&j, "op_data_in_flash", picotflm::OpDataInFlash());
  ptf_json_int(&j, "op_data_in_arena", picotflm::OpDataInArena());
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
  ptf_json_int(&j, "cores_enabled", PICOTFLM_RUNNING_CORES == 2 && pk_core1_enabled() ? 2 : 1);
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

// `cores <n>`: 2 gives core 1 its share of every split op (the board image's default); 1 runs the
// same image on core 0 alone, so that one image is measured both ways.
__attribute__((noinline)) void cmd_cores(uint32_t n) {
  if (n < 1 || n > (uint32_t)PICOTFLM_RUNNING_CORES) {
    return send_error("range", PICOTFLM_RUNNING_CORES == 2 ? "cores takes 1 or 2" : "this image runs one core: cores takes 1");
  }
  pk_core1_set_enabled(n == 2);
  ptf_json_t j;
  begin(&j, "cores");
  ptf_json_int(&j, "cores_enabled", (long long)n);
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
constexpr uint32_t kKeep = 32;
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

}  // namespace

uint8_t* frame_buffer() {
#if PICOTFLM_VARIANT_COUNT > 1
  return g_frame_in;
#else
  return (uint8_t*)g_interpreter->input(0)->data.raw;
#endif
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
    case PTF_CMD_CORES:
      return cmd_cores(r.n);
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
    case PTF_CMD_LAYER:
      return cmd_layer(r);
    default:
      return send_error("unknown_cmd", "unknown command");
  }
}

}  // namespace app
