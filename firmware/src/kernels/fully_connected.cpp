// FULLY_CONNECTED (int8 activations and weights): TFLM's own quantization arithmetic
// (CalculateOpDataFullyConnected), our Eval (pk_fc_s8, bit-exact with TFLM's reference kernel) with
// 16 bytes of op data (op_data.h: in flash or the arena) instead of the stock kernel's OpData (80 with
// the arena's alignment), and the
// per-channel arrays in flash when a host table (UseFcTables) equals them.
// pico-tflmicro's kernel runs every other FULLY_CONNECTED (int4 or int16, non-zero filter zero point).
#include <string.h>

#include "op_data.h"
#include "persistent.h"
#include "picotflm_kernels.h"
#include "pk_fc_softmax.h"
#include "tensorflow/lite/c/builtin_op_data.h"
#include "tensorflow/lite/micro/kernels/fully_connected.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"
#include "tensorflow/lite/micro/micro_context.h"
#include "tensorflow/lite/micro/micro_log.h"

namespace picotflm {
namespace {

bool Int8(int32_t v) { return v >= -128 && v <= 127; }

const FcTable* g_fc_tables = nullptr;
int g_fc_table_count = 0;
int g_fc_matched = 0;

const FcTable* MatchFcTable(const int32_t* mult, const int32_t* shift, int channels) {
  for (int i = 0; i < g_fc_table_count; i++) {
    const FcTable& t = g_fc_tables[i];
    if (t.channels != channels) continue;
    bool same = true;
    for (int c = 0; c < channels && same; c++) same = t.mult[c] == mult[c] && t.shift[c] == shift[c];
    if (same) return &t;
  }
  return nullptr;
}

// The per-channel arrays TFLM computed (in temporary memory): a host table's, or persistent copies.
TfLiteStatus KeepPerChannel(TfLiteContext* context, tflite::OpDataFullyConnected* data) {
  const int channels = CapturedChannels(data->per_channel_output_multiplier, data->per_channel_output_shift);
  if (channels < 0) {
    MicroPrintf("picotflm: unexpected per-channel allocations in FULLY_CONNECTED's Prepare");
    return kTfLiteError;
  }
  if (const FcTable* t = MatchFcTable(data->per_channel_output_multiplier, data->per_channel_output_shift, channels)) {
    data->per_channel_output_multiplier = const_cast<int32_t*>(t->mult);
    data->per_channel_output_shift = const_cast<int32_t*>(t->shift);
    g_fc_matched++;
    return kTfLiteOk;
  }
  return KeepCapturedCopies(context, &data->per_channel_output_multiplier, &data->per_channel_output_shift);
}

void* FcInit(TfLiteContext*, const char*, size_t) { return nullptr; }  // set at Prepare

// The stock kernel set up for this node: its Init's op data, then its Prepare.
TfLiteStatus StockPrepare(TfLiteContext* context, TfLiteNode* node, FcData* d) {
  const TFLMRegistration stock = tflite::Register_FULLY_CONNECTED();
  void* data = stock.init(context, nullptr, 0);
  TF_LITE_ENSURE(context, data != nullptr);
  node->user_data = data;
  const TfLiteStatus status = stock.prepare(context, node);
  d->stock = 1;
  d->stock_data = data;
  return status;
}

TfLiteStatus FcPrepare(TfLiteContext* context, TfLiteNode* node) {
  TF_LITE_ENSURE(context, node->builtin_data != nullptr);
  FcData rec;
  memset(&rec, 0, sizeof(rec));
  FcData* d = &rec;
  const auto* params = static_cast<const TfLiteFullyConnectedParams*>(node->builtin_data);
  tflite::MicroContext* micro = tflite::GetMicroContext(context);
  TfLiteTensor* input = micro->AllocateTempInputTensor(node, tflite::kFullyConnectedInputTensor);
  TfLiteTensor* filter = micro->AllocateTempInputTensor(node, tflite::kFullyConnectedWeightsTensor);
  TfLiteTensor* bias = micro->AllocateTempInputTensor(node, tflite::kFullyConnectedBiasTensor);
  TfLiteTensor* output = micro->AllocateTempOutputTensor(node, tflite::kFullyConnectedOutputTensor);
  TF_LITE_ENSURE(context, input != nullptr && filter != nullptr && output != nullptr);
  const bool fast = input->type == kTfLiteInt8 && filter->type == kTfLiteInt8 && output->type == kTfLiteInt8 &&
                    (bias == nullptr || bias->type == kTfLiteInt32) && filter->params.zero_point == 0 &&
                    filter->dims->size == 2 && output->dims->size >= 1;
  TfLiteStatus status = kTfLiteOk;
  bool stock = !fast;
  if (fast) {
    tflite::OpDataFullyConnected data;  // on the stack: only what Eval reads is kept
    memset(&data, 0, sizeof(data));
    BeginPerChannelCapture(context);
    status = tflite::CalculateOpDataFullyConnected(context, params->activation, input->type, input, filter, bias,
                                                   output, &data);
    EndPerChannelCapture(context);
    const bool per_channel = data.is_per_channel;
    if (status == kTfLiteOk && per_channel) status = KeepPerChannel(context, &data);
    ReleaseCapture(context);
    if (status == kTfLiteOk && Int8(data.input_zero_point) && Int8(data.output_zero_point) &&
        Int8(data.output_activation_min) && Int8(data.output_activation_max) &&
        (!per_channel || output->dims->size == 2)) {
      d->per_channel = per_channel ? 1 : 0;
      if (per_channel) {
        d->mult_pc = data.per_channel_output_multiplier;  // a host table (flash) or persistent copies
        d->shift_pc = data.per_channel_output_shift;
      } else {
        d->mult = data.output_multiplier;
        d->shift = data.output_shift;
      }
      d->input_zp = static_cast<int8_t>(data.input_zero_point);
      d->output_zp = static_cast<int8_t>(data.output_zero_point);
      d->act_min = static_cast<int8_t>(data.output_activation_min);
      d->act_max = static_cast<int8_t>(data.output_activation_max);
      d->stock = 0;
    } else if (status == kTfLiteOk) {
      stock = true;
    }
  }
  micro->DeallocateTempTfLiteTensor(input);
  micro->DeallocateTempTfLiteTensor(filter);
  if (bias != nullptr) micro->DeallocateTempTfLiteTensor(bias);
  micro->DeallocateTempTfLiteTensor(output);
  if (stock) status = StockPrepare(context, node, d);
  if (status != kTfLiteOk) return status;
  // The stock kernel's record points at its op data in the arena: never one of the host's.
  return stock ? KeepOpDataOf(context, node, rec, static_cast<const FcData*>(nullptr), 0)
               : KeepOpDataOf(context, node, rec, g_op_data.fc, g_op_data.fc_count);
}

TfLiteStatus FcEval(TfLiteContext* context, TfLiteNode* node) {
  const auto* d = static_cast<const FcData*>(node->user_data);
  if (d->stock) {
    const TFLMRegistration stock = tflite::Register_FULLY_CONNECTED();
    node->user_data = d->stock_data;
    const TfLiteStatus status = stock.invoke(context, node);
    node->user_data = const_cast<FcData*>(d);
    return status;
  }
  const TfLiteEvalTensor* input = tflite::micro::GetEvalInput(context, node, tflite::kFullyConnectedInputTensor);
  const TfLiteEvalTensor* filter = tflite::micro::GetEvalInput(context, node, tflite::kFullyConnectedWeightsTensor);
  const TfLiteEvalTensor* bias = tflite::micro::GetEvalInput(context, node, tflite::kFullyConnectedBiasTensor);
  TfLiteEvalTensor* output = tflite::micro::GetEvalOutput(context, node, tflite::kFullyConnectedOutputTensor);
  const int out_dims = output->dims->size;
  const int32_t out_c = output->dims->data[out_dims - 1];
  int32_t batches = 1;
  for (int i = 0; i < out_dims - 1; i++) batches *= output->dims->data[i];
  const int32_t depth = filter->dims->data[filter->dims->size - 1];
  pk_fc_s8(tflite::micro::GetTensorData<int8_t>(input), tflite::micro::GetTensorData<int8_t>(filter),
           bias != nullptr ? tflite::micro::GetTensorData<int32_t>(bias) : nullptr,
           tflite::micro::GetTensorData<int8_t>(output), batches, depth, out_c, -d->input_zp, d->output_zp,
           d->per_channel ? d->mult_pc : &d->mult, d->per_channel ? d->shift_pc : &d->shift, d->per_channel,
           d->act_min, d->act_max);
  return kTfLiteOk;
}

}  // namespace

void UseFcTables(const FcTable* tables, int count) {
  g_fc_tables = tables;
  g_fc_table_count = count;
  g_fc_matched = 0;
}
int FcTablesMatched() { return g_fc_matched; }

TFLMRegistration Register_FULLY_CONNECTED() { return tflite::micro::RegisterOp(FcInit, FcPrepare, FcEval); }

}  // namespace picotflm
