// What a CONV_2D or DEPTHWISE_CONV_2D keeps in the arena between its Prepare and its Eval, and the
// helpers both kernels use to read it.
#ifndef PICOTFLM_CONV_DATA_H_
#define PICOTFLM_CONV_DATA_H_

#include "picotflm_kernels.h"
#include "pk_core.h"
#include "quant_tables.h"
#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/micro/kernels/conv.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"

namespace picotflm {

// What a conv or depthwise conv keeps for its Eval: 16 bytes, in flash (op_data.h) or one slot of the
// arena's 16-byte alignment (TFLM's OpDataConv takes 64). With `table` set, the op runs our fast path with a
// host table's per-channel arrays (in flash), and these fields are all it reads. With `table` null,
// TFLM's OpDataConv follows (FullConvData): no table matched, or the op needs TFLM's reference kernel,
// or its activations are not int8.
struct ConvData {
  const QuantTable* table;
  int16_t pad_h, pad_w;
  int8_t input_zero_point, output_zero_point, act_min, act_max;
  int16_t filter_buffer_index;  // the int4 unpack buffer TFLM's Prepare requested (0 for int8 weights)
  // DEPTHWISE_CONV_2D: the scratch index of the padded copy of its input (DepthwisePrepare), or -1.
  // CONV_2D (ConvPrepare): -1, or the index of the host table whose expanded weights equal the op's
  // (kAuxNoWide: none) plus kAuxGroups when `table`'s group records equal the op's own.
  int16_t aux;
};
static_assert(sizeof(ConvData) == 16, "ConvData is one 16-byte arena slot");
constexpr int16_t kAuxNoWide = 0x3FFF, kAuxGroups = 0x4000;

struct FullConvData {
  ConvData head;  // head.table == nullptr
  tflite::OpDataConv conv;
};

inline const tflite::OpDataConv* Full(const ConvData& d) {
  return d.table == nullptr ? &reinterpret_cast<const FullConvData*>(&d)->conv : nullptr;
}

// Filter data as int8: int4 weights are unpacked into the scratch buffer TFLM's Prepare requested.
inline const int8_t* FilterInt8(TfLiteContext* context, const TfLiteEvalTensor* filter, int filter_buffer_index) {
  if (filter->type == kTfLiteInt8) return tflite::micro::GetTensorData<int8_t>(filter);
  int8_t* unpacked = static_cast<int8_t*>(context->GetScratchBuffer(context, filter_buffer_index));
  pk_unpack_s4(tflite::micro::GetTensorData<int8_t>(filter), tflite::micro::GetTensorShape(filter).FlatSize(),
               unpacked);
  return unpacked;
}

// The kernels' parameters of an op from its tensors' shapes and its ConvData (or TFLM's OpDataConv
// behind it).
pk_conv_params Params(const TfLiteIntArray* input, const TfLiteIntArray* filter, const TfLiteIntArray* output,
                      int stride_h, int stride_w, const ConvData& d);

// Whether two tensors share a byte (only an in-place memory plan makes an op's output overlap its input).
bool Overlap(const TfLiteEvalTensor* a, const TfLiteEvalTensor* b);

// Init: nothing yet (the node's user_data is set at Prepare, by PrepareConvData and KeepConvData).
void* ConvDataInit(TfLiteContext* context, const char* buffer, size_t length);

// Runs TFLM's Prepare on a temporary OpDataConv, then keeps what Eval reads. When the op takes our
// fast path (`fast`: its shape and types allow it) with a host table, `d` (the caller's, on its
// stack) holds its ConvData and node->user_data points at `d` until KeepConvData; else TFLM's
// OpDataConv is kept too, in the arena (FullConvData), and node->user_data points at that.
TfLiteStatus PrepareConvData(TfLiteContext* context, TfLiteNode* node,
                             TfLiteStatus (*prepare)(TfLiteContext*, TfLiteNode*), bool fast, ConvData* d);

// The end of a conv's Prepare: a ConvData still on the stack (`d`) goes to flash or the arena
// (op_data.h's KeepOpData).
TfLiteStatus KeepConvData(TfLiteContext* context, TfLiteNode* node, const ConvData* d);

}  // namespace picotflm

#endif  // PICOTFLM_CONV_DATA_H_
