// Per-op timing (`profile`): TFLM calls BeginEvent/EndEvent around every operator of an Invoke when
// a profiler is attached; ours is attached at every setup and records only while `profile` runs.
#ifndef PICOTFLM_APP_PROFILE_H_
#define PICOTFLM_APP_PROFILE_H_

#include <stdint.h>

#include "board.h"
#include "model_config.h"
#include "tensorflow/lite/micro/micro_profiler_interface.h"

namespace app {

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

extern OpProfiler g_profiler;

// `profile`: one Invoke of golden input 0, each op's cycles and microseconds.
void cmd_profile();

}  // namespace app

#endif  // PICOTFLM_APP_PROFILE_H_
