// See tflm_log.h. Defining DebugLog and DebugVsnprintf keeps pico-tflmicro's system_setup.o (its
// stdout DebugLog) out of the link.
#include "app/tflm_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

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

namespace app {

void tflm_log_clear() { g_tflm_log[0] = '\0'; }

const char* tflm_log() { return g_tflm_log; }

}  // namespace app
