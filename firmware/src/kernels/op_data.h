// What picotflm's kernels keep for an op between its Prepare and its Eval (its "op data"), and where
// it lives: in flash when the host wrote an equal record into the generated op resolver
// (pipeline/codegen/op_data.py), else in the arena as TFLM keeps op data. Each Prepare computes its
// record on the stack (zeroed first, so that padding compares equal) and KeepOpData finds it.
#ifndef PICOTFLM_OP_DATA_H_
#define PICOTFLM_OP_DATA_H_

#include <stdint.h>
#include <string.h>

#include "conv_data.h"
#include "tensorflow/lite/c/common.h"

namespace picotflm {

// MEAN's fast path (an int8 mean over axes {1, 2}): 16 bytes instead of TFLM's 40-byte OpDataReduce
// (48 with the arena's alignment). `full`: TFLM's follows (mean.cpp's FullMeanData), for every other
// mean, which TFLM's own Eval computes.
struct MeanData {
  int32_t multiplier;
  int16_t temp_buffer_idx;
  int8_t shift, input_zp, output_zp;
  bool full;
};
static_assert(sizeof(MeanData) <= 16, "MeanData is one 16-byte arena slot");

// FULLY_CONNECTED: per channel, the two per-channel arrays (a host table's in flash, or arena copies);
// per tensor, the one multiplier and shift; `stock`: pico-tflmicro's own op data, its kernel runs.
struct FcData {
  union {
    const int32_t* mult_pc;
    int32_t mult;
    void* stock_data;
  };
  union {
    const int32_t* shift_pc;
    int32_t shift;
  };
  int8_t input_zp, output_zp, act_min, act_max;
  uint8_t per_channel, stock;
};
static_assert(sizeof(FcData) <= 16, "FcData is one 16-byte arena slot");

// SOFTMAX: TFLM's SoftmaxParams that pk_softmax_s8 reads; `stock`: pico-tflmicro's own op data.
struct SoftmaxData {
  union {
    int32_t mult;
    void* stock_data;
  };
  int32_t left_shift, diff_min;
  uint8_t stock;
};
static_assert(sizeof(SoftmaxData) <= 16, "SoftmaxData is one 16-byte arena slot");

// The host's records, one table per kind (each may be empty).
struct OpDataTables {
  const ConvData* conv;
  int conv_count;
  const MeanData* mean;
  int mean_count;
  const FcData* fc;
  int fc_count;
  const SoftmaxData* softmax;
  int softmax_count;
};
void UseOpData(const OpDataTables& tables);
extern OpDataTables g_op_data;

// Records found in flash, and kept in the arena, since the last ResetOpDataCounts.
int OpDataInFlash();
int OpDataInArena();
void ResetOpDataCounts();
void CountOpData(bool in_flash);

// The op's data: the entry of table[0..n) byte-equal to `computed`, else a copy of it in the arena's
// persistent memory (nullptr when the arena is full). Kernels only read it after Prepare.
template <typename T>
const T* KeepOpData(TfLiteContext* context, const T& computed, const T* table, int n) {
  for (int i = 0; i < n; i++) {
    if (memcmp(&table[i], &computed, sizeof(T)) == 0) {
      CountOpData(true);
      return &table[i];
    }
  }
  void* copy = context->AllocatePersistentBuffer(context, sizeof(T));
  if (copy == nullptr) return nullptr;
  memcpy(copy, &computed, sizeof(T));
  CountOpData(false);
  return static_cast<const T*>(copy);
}

// Sets the node's user_data to the kept record: TFLM's node keeps a non-const pointer, the kernels
// read it as const.
template <typename T>
TfLiteStatus KeepOpDataOf(TfLiteContext* context, TfLiteNode* node, const T& computed, const T* table, int n) {
  const T* kept = KeepOpData(context, computed, table, n);
  TF_LITE_ENSURE(context, kept != nullptr);
  node->user_data = const_cast<T*>(kept);
  return kTfLiteOk;
}

}  // namespace picotflm

#endif  // PICOTFLM_OP_DATA_H_
