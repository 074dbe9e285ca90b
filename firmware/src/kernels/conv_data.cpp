// See conv_data.h.
#include "conv_data.h"

#include <string.h>

#include "op_data.h"
#include "persistent.h"
#include "tensorflow/lite/micro/micro_context.h"

namespace picotflm {

using tflite::OpDataConv;

namespace {

pk_conv_params Params(const TfLiteIntArray* input, const TfLiteIntArray* filter, const TfLiteIntArray* output,
                      int stride_h, int stride_w) {
  pk_conv_params p;
  p.in_h = input->data[1];
  p.in_w = input->data[2];
  p.in_c = input->data[3];
  p.out_h = output->data[1];
  p.out_w = output->data[2];
  p.out_c = output->data[3];
  p.k_h = filter->data[1];
  p.k_w = filter->data[2];
  p.stride_h = stride_h;
  p.stride_w = stride_w;
  p.wx = nullptr;
  p.wx8 = nullptr;
  p.groups = nullptr;
  return p;
}

}  // namespace

pk_conv_params Params(const TfLiteIntArray* input, const TfLiteIntArray* filter, const TfLiteIntArray* output,
                      int stride_h, int stride_w, const ConvData& d) {
  pk_conv_params p = Params(input, filter, output, stride_h, stride_w);
  if (const OpDataConv* data = Full(d)) {
    p.pad_h = data->padding.height;
    p.pad_w = data->padding.width;
    p.input_offset = -data->input_zero_point;
    p.output_offset = data->output_zero_point;
    p.act_min = data->output_activation_min;
    p.act_max = data->output_activation_max;
    p.mult = data->per_channel_output_multiplier;
    p.shift = data->per_channel_output_shift;
    p.lo_at = Thresholds(*data);
    return p;
  }
  p.pad_h = d.pad_h;
  p.pad_w = d.pad_w;
  p.input_offset = -d.input_zero_point;
  p.output_offset = d.output_zero_point;
  p.act_min = d.act_min;
  p.act_max = d.act_max;
  p.mult = d.table->mult;
  p.shift = d.table->shift;
  p.lo_at = ThresholdsOf(static_cast<int>(d.table - g_tables), d.output_zero_point, d.act_min, d.act_max);
  return p;
}

bool Overlap(const TfLiteEvalTensor* a, const TfLiteEvalTensor* b) {
  const auto lo_a = reinterpret_cast<uintptr_t>(a->data.data), lo_b = reinterpret_cast<uintptr_t>(b->data.data);
  const uintptr_t hi_a = lo_a + tflite::micro::GetTensorShape(a).FlatSize();
  const uintptr_t hi_b = lo_b + tflite::micro::GetTensorShape(b).FlatSize();
  return lo_a < hi_b && lo_b < hi_a;
}

void* ConvDataInit(TfLiteContext*, const char*, size_t) { return nullptr; }  // set at Prepare

TfLiteStatus PrepareConvData(TfLiteContext* context, TfLiteNode* node,
                             TfLiteStatus (*prepare)(TfLiteContext*, TfLiteNode*), bool fast, ConvData* d) {
  TF_LITE_ENSURE(context, d != nullptr);
  memset(d, 0, sizeof(ConvData));
  tflite::MicroContext* micro = tflite::GetMicroContext(context);
  auto* temp = reinterpret_cast<OpDataConv*>(micro->AllocateTempBuffer(sizeof(OpDataConv), alignof(OpDataConv)));
  TF_LITE_ENSURE(context, temp != nullptr);
  memset(temp, 0, sizeof(OpDataConv));
  node->user_data = temp;  // TFLM's Prepare reads node->user_data as its OpDataConv
  const QuantTable* table = nullptr;
  TfLiteStatus status = PrepareWithTables(context, node, prepare, temp, &table);
  node->user_data = d;
  const int32_t act_min = temp->output_activation_min, act_max = temp->output_activation_max;
  const bool int8_range = temp->input_zero_point >= -128 && temp->input_zero_point <= 127 &&
                          temp->output_zero_point >= -128 && temp->output_zero_point <= 127 && act_min >= -128 &&
                          act_max <= 127 && temp->filter_buffer_index >= -1 && temp->filter_buffer_index <= 32767;
  d->aux = -1;
  if (status == kTfLiteOk && fast && table != nullptr && int8_range) {
    d->table = table;
    d->pad_h = static_cast<int16_t>(temp->padding.height);
    d->pad_w = static_cast<int16_t>(temp->padding.width);
    d->input_zero_point = static_cast<int8_t>(temp->input_zero_point);
    d->output_zero_point = static_cast<int8_t>(temp->output_zero_point);
    d->act_min = static_cast<int8_t>(act_min);
    d->act_max = static_cast<int8_t>(act_max);
    d->filter_buffer_index = static_cast<int16_t>(temp->filter_buffer_index);
  } else if (status == kTfLiteOk) {
    auto* full = static_cast<FullConvData*>(PersistentBeside(context, sizeof(FullConvData), temp, sizeof(*temp)));
    if (full == nullptr) {
      status = kTfLiteError;
    } else {
      full->head = ConvData();
      full->head.table = nullptr;
      full->head.aux = -1;
      full->head.filter_buffer_index = -1;
      full->conv = *temp;
      node->user_data = full;
    }
  }
  micro->DeallocateTempBuffer(reinterpret_cast<uint8_t*>(temp));
  if (status != kTfLiteOk && node->user_data == d) node->user_data = nullptr;
  return status;
}

TfLiteStatus KeepConvData(TfLiteContext* context, TfLiteNode* node, const ConvData* d) {
  if (node->user_data != d) return kTfLiteOk;  // TFLM's OpDataConv kept (FullConvData)
  return KeepOpDataOf(context, node, *d, g_op_data.conv, g_op_data.conv_count);
}

}  // namespace picotflm
