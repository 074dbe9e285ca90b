// See profile.h.
#include "app/profile.h"

#include <string.h>

#include "app/reply.h"
#include "app/setup.h"
#include "golden_data.h"

namespace app {

OpProfiler g_profiler;

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

}  // namespace app
