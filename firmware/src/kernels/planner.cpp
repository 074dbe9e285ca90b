// PlannedMemoryPlanner (picotflm_kernels.h): TFLM's greedy planner with a few buffers placed by the
// host's in-place plan (pipeline/codegen/memplan.py).
#include "picotflm_kernels.h"

namespace picotflm {

TfLiteStatus PlannedMemoryPlanner::AddBuffer(int size, int first_time_used, int last_time_used) {
  for (int i = 0; i < entries_ && i < kMaxPlanEntries; i++) {
    const int32_t* e = plan_ + 4 * i;
    const uint32_t bit = 1u << (i % 32);
    if ((used_[i / 32] & bit) == 0 && e[0] == size && e[1] == first_time_used && e[2] == last_time_used) {
      used_[i / 32] |= bit;
      matched_++;
      return GreedyMemoryPlanner::AddBuffer(size, first_time_used, last_time_used, e[3]);
    }
  }
  return GreedyMemoryPlanner::AddBuffer(size, first_time_used, last_time_used);
}

}  // namespace picotflm
