// CONV_2D: TFLM's own Prepare (shapes, padding, per-channel multipliers, the int4 unpack buffer),
// our Eval (pk_core.c, pk_dot_m0.S); TFLM's reference kernel for what the fast path does not cover.
#include "codebook.h"
#include "conv_data.h"
#include "conv_run.h"
#include "quant_cache.h"
#include "tensorflow/lite/c/builtin_op_data.h"
#include "tensorflow/lite/kernels/internal/reference/integer_ops/conv.h"
#include "tensorflow/lite/micro/kernels/conv.h"

namespace picotflm {
namespace {

using tflite::OpDataConv;

// TFLM's reference kernels for what the fast paths do not cover, out of line: their shapes and
// parameter structs (about 300 bytes) stay off the stack of every Eval.
__attribute__((noinline)) void ConvReference(const TfLiteConvParams& params, const OpDataConv& data,
                                             const TfLiteEvalTensor* input, const TfLiteEvalTensor* filter,
                                             const TfLiteEvalTensor* bias, const TfLiteEvalTensor* output,
                                             const int8_t* in, const int8_t* w, const int32_t* b, int8_t* out) {
  tflite::reference_integer_ops::ConvPerChannel(
      tflite::ConvParamsQuantized(params, data), data.per_channel_output_multiplier, data.per_channel_output_shift,
      tflite::micro::GetTensorShape(input), in, tflite::micro::GetTensorShape(filter), w,
      tflite::micro::GetTensorShape(bias), b, tflite::micro::GetTensorShape(output), out);
}

// Weight e of an int8 or packed int4 (two a byte, the first in the low nibble) filter.
int32_t Weight(const TfLiteEvalTensor* filter, int e) {
  if (filter->type == kTfLiteInt8) return filter->data.int8[e];
  const uint8_t b = static_cast<uint8_t>(filter->data.int8[e / 2]);
  const int32_t v = (e & 1) ? b >> 4 : b & 0x0F;
  return v > 7 ? v - 16 : v;
}

// The index of the host table whose expanded weights (QuantTable::wx) equal this conv's filter, or
// -1. Compared in full at every Prepare: a table is used only by an op whose weights it holds.
int WideTable(const TfLiteEvalTensor* filter) {
  if (filter->dims->size != 4 || (filter->type != kTfLiteInt8 && filter->type != kTfLiteInt4)) return -1;
  const int oc = filter->dims->data[0];
  const int k = filter->dims->data[1] * filter->dims->data[2] * filter->dims->data[3];
  // A switching firmware sets each model up again at every switch: a table found equal to weights
  // that stay in flash is taken again without the comparison (about 200 us for MicroPizzaNet).
  const bool in_flash = (reinterpret_cast<uintptr_t>(filter->data.raw) >> 24) == 0x10;  // XIP flash
  if (g_cache != nullptr && in_flash) {
    for (int i = 0; i < g_table_count && i < kAuxNoWide; i++)
      if (g_cache[i].wide_filter == filter->data.raw && g_tables[i].channels == oc) return i;
  }
  for (int i = 0; i < g_table_count && i < kAuxNoWide; i++) {
    const QuantTable& t = g_tables[i];
    if (t.wx == nullptr || t.channels != oc) continue;
    bool same = true;
    for (int g = 0; g < oc / 4 && same; g++)
      for (int j = 0; j < 4 && same; j++)
        for (int x = 0; x < k && same; x++) same = t.wx[(g * k + x) * 4 + j] == Weight(filter, (4 * g + j) * k + x);
    for (int pr = 0; t.wx8 != nullptr && pr < oc / 8 && same; pr++)  // the pairs' one-stream copy
      for (int j = 0; j < 8 && same; j++)
        for (int x = 0; x < k && same; x++) same = t.wx8[(pr * k + x) * 8 + j] == Weight(filter, (8 * pr + j) * k + x);
    if (same) {
      if (g_cache != nullptr && in_flash) g_cache[i].wide_filter = filter->data.raw;
      return i;
    }
  }
  return -1;
}

// Whether the group records of the op's table (QuantTable::groups) equal what the kernel computes
// for this op (its weights, bias, offsets and requantization), every group taking the assembly
// spans: then its Eval reads them instead of computing them at every call. The weights' sums come
// from the expanded weights when a wide table holds them (int8 or int4), else from int8 weights.
bool GroupsEqual(const TfLiteEvalTensor* input, const TfLiteEvalTensor* filter, const TfLiteEvalTensor* bias,
                 const TfLiteEvalTensor* output, const TfLiteConvParams& params, const ConvData& d, int wide) {
  if (d.table == nullptr || d.table->groups == nullptr || d.table->channels != filter->dims->data[0] ||
      output->dims->size != 4 || pk_codebook_of(filter->data.raw) != nullptr)
    return false;
  if (wide < 0 && filter->type != kTfLiteInt8) return false;
  pk_conv_params p = Params(input->dims, filter->dims, output->dims, params.stride_height, params.stride_width, d);
  p.wx = wide >= 0 ? g_tables[wide].wx : nullptr;
  const int8_t* w = wide >= 0 ? nullptr : filter->data.int8;
  const int32_t* b = bias ? tflite::micro::GetTensorData<int32_t>(bias) : nullptr;
  return pk_group_table_equal(&p, w, b, d.table->groups) != 0;
}

TfLiteStatus ConvPrepare(TfLiteContext* context, TfLiteNode* node) {
  const auto& params = *static_cast<const TfLiteConvParams*>(node->builtin_data);
  // The eval tensors (type, shape, data), not temporary TfLiteTensors: nothing to parse or free.
  const TfLiteEvalTensor* input = tflite::micro::GetEvalInput(context, node, tflite::kConvInputTensor);
  const TfLiteEvalTensor* filter = tflite::micro::GetEvalInput(context, node, tflite::kConvWeightsTensor);
  const TfLiteEvalTensor* bias =
      node->inputs->size == 3 ? tflite::micro::GetEvalInput(context, node, tflite::kConvBiasTensor) : nullptr;
  TF_LITE_ENSURE(context, input != nullptr && filter != nullptr);
  // What ConvEval's fast path needs (it checks each again and refuses the rest with an error).
  const bool fast = input->type == kTfLiteInt8 && (filter->type == kTfLiteInt8 || filter->type == kTfLiteInt4) &&
                    (bias == nullptr || bias->type == kTfLiteInt32) && params.dilation_height_factor == 1 &&
                    params.dilation_width_factor == 1 && input->dims->size == 4 && filter->dims->size == 4 &&
                    input->dims->data[3] == filter->dims->data[3];
  const int wide = fast ? WideTable(filter) : -1;
  ConvData rec;
  TF_LITE_ENSURE_STATUS(PrepareConvData(context, node, tflite::ConvPrepare, fast, &rec));
  ConvData& d = *static_cast<ConvData*>(node->user_data);
  const TfLiteEvalTensor* output = tflite::micro::GetEvalOutput(context, node, tflite::kConvOutputTensor);
  const bool groups = fast && output != nullptr && GroupsEqual(input, filter, bias, output, params, d, wide);
  d.aux = static_cast<int16_t>(wide >= 0 || groups ? (wide >= 0 ? wide : kAuxNoWide) | (groups ? kAuxGroups : 0) : -1);
  if (wide >= 0) g_wide++;
  if (groups) g_groups++;
  return KeepConvData(context, node, &rec);
}

TfLiteStatus ConvEval(TfLiteContext* context, TfLiteNode* node) {
  const auto& params = *static_cast<const TfLiteConvParams*>(node->builtin_data);
  const ConvData& d = *static_cast<const ConvData*>(node->user_data);
  const OpDataConv* data = Full(d);
  const TfLiteEvalTensor* input = tflite::micro::GetEvalInput(context, node, tflite::kConvInputTensor);
  const TfLiteEvalTensor* filter = tflite::micro::GetEvalInput(context, node, tflite::kConvWeightsTensor);
  const TfLiteEvalTensor* bias =
      node->inputs->size == 3 ? tflite::micro::GetEvalInput(context, node, tflite::kConvBiasTensor) : nullptr;
  TfLiteEvalTensor* output = tflite::micro::GetEvalOutput(context, node, tflite::kConvOutputTensor);
  TF_LITE_ENSURE_MSG(context, input->type == kTfLiteInt8, "picotflm CONV_2D: only int8 activations");
  TF_LITE_ENSURE_MSG(context, filter->type == kTfLiteInt8 || filter->type == kTfLiteInt4,
                     "picotflm CONV_2D: only int8 or int4 weights");
  TF_LITE_ENSURE_MSG(context, bias == nullptr || bias->type == kTfLiteInt32, "picotflm CONV_2D: int32 bias only");
  const int8_t* w = FilterInt8(context, filter, data ? data->filter_buffer_index : d.filter_buffer_index);
  const int32_t* b = bias ? tflite::micro::GetTensorData<int32_t>(bias) : nullptr;
  const int8_t* in = tflite::micro::GetTensorData<int8_t>(input);
  int8_t* out = tflite::micro::GetTensorData<int8_t>(output);

  const bool fast = params.dilation_height_factor == 1 && params.dilation_width_factor == 1 &&
                    input->dims->data[3] == filter->dims->data[3];  // one group
  if (!fast) {
    TF_LITE_ENSURE_MSG(context, data != nullptr, "picotflm CONV_2D: the op's data was prepared for the fast path");
    TF_LITE_ENSURE_MSG(context, !Overlap(input, output),
                       "picotflm CONV_2D: the plan put the output over the input of an op it cannot run in place");
    ConvReference(params, *data, input, filter, bias, output, in, w, b, out);
    return kTfLiteOk;
  }
  pk_conv_params p = Params(input->dims, filter->dims, output->dims, params.stride_height, params.stride_width, d);
  const int wide = d.aux >= 0 && (d.aux & kAuxNoWide) != kAuxNoWide ? d.aux & kAuxNoWide : -1;
  p.wx = wide >= 0 ? g_tables[wide].wx : nullptr;
  p.wx8 = wide >= 0 ? g_tables[wide].wx8 : nullptr;
  p.groups = d.aux >= 0 && (d.aux & kAuxGroups) ? d.table->groups : nullptr;
  if (const pk_codebook* cb = pk_codebook_of(filter->data.raw)) {  // codebook weights (codebook.h)
    TF_LITE_ENSURE_MSG(context, input->dims->data[0] == 1 && pk_conv_s8_codebook(&p, cb, in, b, out, g_pk_codebook_scratch),
                       "picotflm CONV_2D: codebook weights need one image, k <= 192 and a safe in-place plan");
    return kTfLiteOk;
  }
  const int in_size = p.in_h * p.in_w * p.in_c, out_size = p.out_h * p.out_w * p.out_c;
  for (int n = 0; n < input->dims->data[0]; n++) {
    TF_LITE_ENSURE_MSG(context, RunConv(&p, in + n * in_size, w, b, out + n * out_size, false),
                       "picotflm CONV_2D: the output overlaps input rows still to be read (memory plan)");
  }
  return kTfLiteOk;
}

}  // namespace

TFLMRegistration Register_CONV_2D() {
  return tflite::micro::RegisterOp(ConvDataInit, ConvPrepare, ConvEval);
}

}  // namespace picotflm
