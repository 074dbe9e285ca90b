// The host's per-channel tables (QuantTable, picotflm_kernels.h) of the model set up now: which table
// a convolution's Prepare results equal, each table's ReLU thresholds once checked against the
// firmware's own, and the counts that `info` reports.
#ifndef PICOTFLM_QUANT_TABLES_H_
#define PICOTFLM_QUANT_TABLES_H_

#include "picotflm_kernels.h"
#include "tensorflow/lite/micro/kernels/conv.h"

namespace picotflm {

// The tables UseQuantTables was given.
extern const QuantTable* g_tables;
extern int g_table_count;
// Convolutions using a table's expanded weights (WideTable in conv.cpp) since the last count reset.
extern int g_wide;
// Convolutions using a table's group records (GroupTable in conv.cpp) since the last count reset.
extern int g_groups;

// Bit i: table i's ReLU thresholds were checked (once per boot) and all equal pk_lo_threshold_of's.
constexpr int kMaxCheckedTables = 128;
extern uint32_t g_lo_equal[kMaxCheckedTables / 32];

// Table i's thresholds, if they were checked equal and the op's output offset and activation range
// are the table's; else nullptr. Inline: every conv's Eval asks.
inline const int32_t* ThresholdsOf(int i, int32_t output_offset, int32_t act_min, int32_t act_max) {
  const QuantTable& t = g_tables[i];
  if (i < kMaxCheckedTables && ((g_lo_equal[i / 32] >> (i % 32)) & 1u) && t.out_offset == output_offset &&
      t.act_min == act_min && t.act_max == act_max)
    return t.lo_at;
  return nullptr;
}

// The thresholds for an op with TFLM's OpDataConv whose per-channel arrays are a host table's.
inline const int32_t* Thresholds(const tflite::OpDataConv& data) {
  for (int i = 0; i < g_table_count; i++) {
    if (g_tables[i].mult == data.per_channel_output_multiplier)
      return ThresholdsOf(i, data.output_zero_point, data.output_activation_min, data.output_activation_max);
  }
  return nullptr;
}

// TFLM's Prepare for a conv or depthwise conv (`prepare`, on `data`, which node->user_data points
// at). `*matched`: the host table whose per-channel arrays the op now uses, or nullptr.
TfLiteStatus PrepareWithTables(TfLiteContext* context, TfLiteNode* node,
                               TfLiteStatus (*prepare)(TfLiteContext*, TfLiteNode*), tflite::OpDataConv* data,
                               const QuantTable** matched);

}  // namespace picotflm

#endif  // PICOTFLM_QUANT_TABLES_H_
