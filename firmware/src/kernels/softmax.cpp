// SOFTMAX (int8 in, int8 out): TFLM's own parameters (CalculateSoftmaxParams), our Eval
// (pk_softmax_s8, bit-exact with TFLM's reference int8 softmax) with 16 bytes of op data (op_data.h:
// in flash or the arena) instead of the stock kernel's (64 with the arena's alignment). pico-tflmicro's kernel runs every other softmax.
#include <string.h>

#include "op_data.h"
#include "picotflm_kernels.h"
#include "pk_fc_softmax.h"
#include "tensorflow/lite/c/builtin_op_data.h"
#include "tensorflow/lite/kernels/internal/types.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"
#include "tensorflow/lite/micro/kernels/softmax.h"
#include "tensorflow/lite/micro/micro_context.h"

namespace picotflm {
namespace {

// The longest row pk_softmax_s8 takes: its sum of exponentials (at most 2^19 a value) keeps the
// headroom its final shift needs below 32 bits.
constexpr int32_t kMaxRow = 512;

void* SoftmaxInit(TfLiteContext*, const char*, size_t) { return nullptr; }  // set at Prepare

TfLiteStatus SoftmaxPrepare(TfLiteContext* context, TfLiteNode* node) {
  TF_LITE_ENSURE(context, node->builtin_data != nullptr);
  SoftmaxData rec;
  memset(&rec, 0, sizeof(rec));
  SoftmaxData* d = &rec;
  TF_LITE_ENSURE(context, node->inputs->size == 1 && node->outputs->size == 1);
  tflite::MicroContext* micro = tflite::GetMicroContext(context);
  TfLiteTensor* input = micro->AllocateTempInputTensor(node, 0);
  TfLiteTensor* output = micro->AllocateTempOutputTensor(node, 0);
  TF_LITE_ENSURE(context, input != nullptr && output != nullptr);
  const int dims = input->dims->size;
  const bool fast = input->type == kTfLiteInt8 && output->type == kTfLiteInt8 && dims >= 1 &&
                    input->dims->data[dims - 1] >= 1 && input->dims->data[dims - 1] <= kMaxRow;
  TfLiteStatus status = kTfLiteOk;
  if (fast) {
    tflite::SoftmaxParams p;  // on the stack: only what Eval reads is kept
    memset(&p, 0, sizeof(p));
    status = tflite::CalculateSoftmaxParams(context, input, output,
                                            static_cast<const TfLiteSoftmaxParams*>(node->builtin_data), &p);
    d->mult = p.input_multiplier;
    d->left_shift = p.input_left_shift;
    d->diff_min = p.diff_min;
    d->stock = 0;
  }
  micro->DeallocateTempTfLiteTensor(input);
  micro->DeallocateTempTfLiteTensor(output);
  if (!fast) {
    const TFLMRegistration stock = tflite::Register_SOFTMAX();
    void* data = stock.init(context, nullptr, 0);
    TF_LITE_ENSURE(context, data != nullptr);
    node->user_data = data;
    status = stock.prepare(context, node);
    d->stock = 1;
    d->stock_data = data;
  }
  if (status != kTfLiteOk) return status;
  // The stock kernel's record points at its op data in the arena: never one of the host's.
  return fast ? KeepOpDataOf(context, node, rec, g_op_data.softmax, g_op_data.softmax_count)
              : KeepOpDataOf(context, node, rec, static_cast<const SoftmaxData*>(nullptr), 0);
}

TfLiteStatus SoftmaxEval(TfLiteContext* context, TfLiteNode* node) {
  const auto* d = static_cast<const SoftmaxData*>(node->user_data);
  if (d->stock) {
    const TFLMRegistration stock = tflite::Register_SOFTMAX();
    node->user_data = d->stock_data;
    const TfLiteStatus status = stock.invoke(context, node);
    node->user_data = const_cast<SoftmaxData*>(d);
    return status;
  }
  const TfLiteEvalTensor* input = tflite::micro::GetEvalInput(context, node, 0);
  TfLiteEvalTensor* output = tflite::micro::GetEvalOutput(context, node, 0);
  const int dims = input->dims->size;
  const int32_t row = input->dims->data[dims - 1];
  int32_t rows = 1;
  for (int i = 0; i < dims - 1; i++) rows *= input->dims->data[i];
  pk_softmax_s8(tflite::micro::GetTensorData<int8_t>(input), tflite::micro::GetTensorData<int8_t>(output), rows, row,
                d->mult, d->left_shift, d->diff_min);
  return kTfLiteOk;
}

}  // namespace

TFLMRegistration Register_SOFTMAX() { return tflite::micro::RegisterOp(SoftmaxInit, SoftmaxPrepare, SoftmaxEval); }

}  // namespace picotflm
