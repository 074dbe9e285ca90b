// See switching.h.
#include "app/switching.h"

#include <stdio.h>
#include <string.h>

#include <type_traits>

#include "app/commands.h"
#include "app/output.h"
#include "app/reply.h"
#include "app/setup.h"
#include "board.h"
#include "crc32.h"

namespace app {

namespace {

int g_policy_metric = 0;         // 0: confidence, 1: margin
uint32_t g_policy_permille = 0;  // threshold in thousandths; 0: never escalate

// Set up variant `v` in the arena (a switch); false with setup_error() saying why when that fails.
bool switch_to(int v) {
  g_variant = v;
  return setup(g_arena_limit);
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

}  // namespace

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

}  // namespace app
