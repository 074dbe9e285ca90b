// What TFLM's PopulateConvolutionQuantizationParams computed for each convolution, remembered in the
// QuantCacheSlot of its host table (picotflm_kernels.h), so that the next Prepare of the op (a
// switching firmware sets its models up again at every switch) skips that soft-float computation.
// The wrapper that TFLM's Prepare calls instead of it is in quant_cache.cpp.
#ifndef PICOTFLM_QUANT_CACHE_H_
#define PICOTFLM_QUANT_CACHE_H_

#include "picotflm_kernels.h"

namespace picotflm {

// The result of the PopulateConvolutionQuantizationParams call of the Prepare running now, waiting
// for PrepareWithTables to confirm its table (on its stack while it runs: no static RAM).
struct Pending {
  bool valid = false;
  QuantCacheSlot slot{};
};

// One slot per table (UseQuantTables), or nullptr: no cache.
extern QuantCacheSlot* g_cache;
// The Pending of the Prepare running now, or nullptr (no cache, or no Prepare running).
extern Pending* g_pending;

}  // namespace picotflm

#endif  // PICOTFLM_QUANT_CACHE_H_
