// See quant_cache.h. Linked with --wrap (firmware/CMakeLists.txt): TFLM's conv and depthwise Prepare
// call PICOTFLM_POPULATE_WRAP instead of PopulateConvolutionQuantizationParams.
#include "quant_cache.h"

#include <string.h>

#include "quant_tables.h"
#include "tflm_populate.h"

namespace picotflm {

QuantCacheSlot* g_cache = nullptr;
Pending* g_pending = nullptr;

namespace {

int g_cache_hits = 0;

bool InFlash(const void* p) { return (reinterpret_cast<uintptr_t>(p) >> 24) == 0x10; }  // XIP flash

uint32_t FloatBits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

}  // namespace

int QuantCacheHits() { return g_cache_hits; }

}  // namespace picotflm

extern "C" TfLiteStatus PICOTFLM_POPULATE_WRAP(
    TfLiteContext* context, const TfLiteTensor* input, const TfLiteTensor* filter, const TfLiteTensor* bias,
    TfLiteTensor* output, const TfLiteFusedActivation& activation, int32_t* multiplier, int* shift,
    int32_t* output_activation_min, int32_t* output_activation_max, int32_t* per_channel_multiplier,
    int32_t* per_channel_shift, int num_channels) {
  using picotflm::g_cache;
  using picotflm::g_pending;
  using picotflm::g_table_count;
  using picotflm::g_tables;
  const auto* affine = filter->quantization.type == kTfLiteAffineQuantization
                           ? static_cast<const TfLiteAffineQuantization*>(filter->quantization.params)
                           : nullptr;
  // The key: everything the computation reads. Only constants in flash (the filter's data and its
  // scales, which TFLM points at inside the flatbuffer) make a key; anything else is computed as usual.
  const bool cacheable = g_cache != nullptr && g_pending != nullptr && affine != nullptr && affine->scale != nullptr &&
                         picotflm::InFlash(filter->data.raw) && picotflm::InFlash(affine->scale);
  uint32_t key[12] = {0};
  if (cacheable) {
    key[0] = reinterpret_cast<uintptr_t>(filter->data.raw);
    key[1] = reinterpret_cast<uintptr_t>(affine->scale);
    key[2] = static_cast<uint32_t>(affine->scale->size);
    key[3] = bias != nullptr ? reinterpret_cast<uintptr_t>(bias->data.raw) : 0;
    key[4] = static_cast<uint32_t>(input->type);
    key[5] = picotflm::FloatBits(input->params.scale);
    key[6] = static_cast<uint32_t>(input->params.zero_point);
    key[7] = static_cast<uint32_t>(output->type);
    key[8] = picotflm::FloatBits(output->params.scale);
    key[9] = static_cast<uint32_t>(output->params.zero_point);
    key[10] = static_cast<uint32_t>(activation);
    key[11] = static_cast<uint32_t>(num_channels);
    for (int i = 0; i < g_table_count; i++) {
      const picotflm::QuantCacheSlot& slot = g_cache[i];
      if (!slot.valid || g_tables[i].channels != num_channels || memcmp(slot.key, key, sizeof key) != 0) continue;
      for (int c = 0; c < num_channels; c++) {
        per_channel_multiplier[c] = g_tables[i].mult[c];
        per_channel_shift[c] = g_tables[i].shift[c];
      }
      *multiplier = slot.out_mult;
      *shift = slot.out_shift;
      *output_activation_min = slot.act_min;
      *output_activation_max = slot.act_max;
      picotflm::g_cache_hits++;
      return kTfLiteOk;
    }
  }
  const TfLiteStatus status = PICOTFLM_POPULATE_REAL(
      context, input, filter, bias, output, activation, multiplier, shift, output_activation_min,
      output_activation_max, per_channel_multiplier, per_channel_shift, num_channels);
  if (cacheable && status == kTfLiteOk) {
    memcpy(g_pending->slot.key, key, sizeof key);
    g_pending->slot.out_mult = *multiplier;
    g_pending->slot.out_shift = *shift;
    g_pending->slot.act_min = *output_activation_min;
    g_pending->slot.act_max = *output_activation_max;
    g_pending->valid = true;
  }
  return status;
}
