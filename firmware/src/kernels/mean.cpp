// MEAN: TFLM's own Prepare; our Eval for an int8 mean over axes {1, 2} (pk_sum_hw_s8, then TFLM's
// rescaling step for step), TFLM's Eval for every other mean.
#include <string.h>

#include "op_data.h"
#include "persistent.h"
#include "picotflm_kernels.h"
#include "pk_core.h"
#include "pk_multicore.h"
#include "tensorflow/lite/kernels/internal/common.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"
#include "tensorflow/lite/micro/kernels/reduce.h"
#include "tensorflow/lite/micro/micro_context.h"

namespace picotflm {
namespace {

struct FullMeanData {
  MeanData head;  // head.full
  tflite::OpDataReduce reduce;
};

void* MeanInit(TfLiteContext*, const char*, size_t) { return nullptr; }  // set at Prepare

// Whether MEAN's input and axes are what MeanEval's fast path computes.
bool MeanFast(TfLiteContext* context, TfLiteNode* node) {
  const TfLiteEvalTensor* input = tflite::micro::GetEvalInput(context, node, 0);
  const TfLiteEvalTensor* axis = tflite::micro::GetEvalInput(context, node, 1);
  if (input == nullptr || axis == nullptr || axis->data.data == nullptr || axis->type != kTfLiteInt32) return false;
  if (input->type != kTfLiteInt8 || input->dims->size != 4 || tflite::micro::GetTensorShape(axis).FlatSize() != 2)
    return false;
  const int32_t* ax = tflite::micro::GetTensorData<int32_t>(axis);
  const int a0 = ax[0] < 0 ? ax[0] + 4 : ax[0], a1 = ax[1] < 0 ? ax[1] + 4 : ax[1];
  return (a0 == 1 && a1 == 2) || (a0 == 2 && a1 == 1);
}

// TFLM's Prepare on a temporary OpDataReduce, then MeanData alone for the fast path (in flash or the
// arena, op_data.h), else TFLM's kept in the arena.
TfLiteStatus MeanPrepare(TfLiteContext* context, TfLiteNode* node) {
  MeanData rec;
  memset(&rec, 0, sizeof(rec));
  MeanData* d = &rec;
  tflite::MicroContext* micro = tflite::GetMicroContext(context);
  auto* temp = reinterpret_cast<tflite::OpDataReduce*>(
      micro->AllocateTempBuffer(sizeof(tflite::OpDataReduce), alignof(tflite::OpDataReduce)));
  TF_LITE_ENSURE(context, temp != nullptr);
  memset(temp, 0, sizeof(tflite::OpDataReduce));
  TfLiteStatus status = tflite::PrepareMeanOrSumHelper(context, node, temp);
  bool fast = false;
  const bool fits = temp->shift >= -128 && temp->shift <= 127 && temp->input_zp >= -128 && temp->input_zp <= 127 &&
                    temp->output_zp >= -128 && temp->output_zp <= 127 && temp->temp_buffer_idx >= 0 &&
                    temp->temp_buffer_idx <= 32767;
  if (status == kTfLiteOk && fits && MeanFast(context, node)) {
    d->multiplier = temp->multiplier;
    d->temp_buffer_idx = static_cast<int16_t>(temp->temp_buffer_idx);
    d->shift = static_cast<int8_t>(temp->shift);
    d->input_zp = static_cast<int8_t>(temp->input_zp);
    d->output_zp = static_cast<int8_t>(temp->output_zp);
    d->full = false;
    fast = true;
  } else if (status == kTfLiteOk) {
    auto* full = static_cast<FullMeanData*>(PersistentBeside(context, sizeof(FullMeanData), temp, sizeof(*temp)));
    if (full == nullptr) {
      status = kTfLiteError;
    } else {
      full->head = MeanData();
      full->head.full = true;
      full->reduce = *temp;
      node->user_data = full;
    }
  }
  micro->DeallocateTempBuffer(reinterpret_cast<uint8_t*>(temp));
  if (fast) status = KeepOpDataOf(context, node, rec, g_op_data.mean, g_op_data.mean_count);
  return status;
}

// Mean over axes {1, 2} of an int8 NHWC tensor: the sums in one pass per channel, then TFLM's own
// rescaling (reference_ops::QuantizedMeanOrSum), step for step.
// One image's means of channels [c_lo, c_hi): the sums (pk_sum_hw_s8_range), then TFLM's rescaling.
struct MeanJob {
  const int8_t* in;
  int8_t* out;
  int32_t* sums;
  int32_t hw, channels, c_lo, c_hi, multiplier, out_shift, input_zp, output_zp;
};

void MeanChannels(const MeanJob& j) {
  pk_sum_hw_s8_range(j.in, j.hw, j.channels, j.c_lo, j.c_hi, j.sums);
  const int64_t num_elements = j.hw;
  for (int c = j.c_lo; c < j.c_hi; c++) {
    const int32_t shifted = static_cast<int32_t>(j.sums[c] - j.input_zp * num_elements);
    int32_t v = tflite::MultiplyByQuantizedMultiplier(shifted, j.multiplier, j.out_shift) + j.output_zp;
    v = v < -128 ? -128 : (v > 127 ? 127 : v);
    j.out[c] = static_cast<int8_t>(v);
  }
}

void MeanOnCore1(void* job) { MeanChannels(*static_cast<const MeanJob*>(job)); }

// In the board image core 1 takes the upper half of the channels while core 0 takes the lower half
// (each channel's mean the same either way).
void MeanImage(const MeanJob& whole) {
#if PICOTFLM_CORES == 2
  if (pk_core1_enabled() && whole.channels >= 2 && whole.hw * whole.channels >= 1024) {
    MeanJob lower = whole, upper = whole;
    lower.c_hi = upper.c_lo = whole.channels / 2;
    pk_core1_start(MeanOnCore1, &upper);
    MeanChannels(lower);
    pk_core1_wait();
    return;
  }
#endif
  MeanChannels(whole);
}

TfLiteStatus MeanEval(TfLiteContext* context, TfLiteNode* node) {
  const MeanData& d = *static_cast<const MeanData*>(node->user_data);
  if (d.full) return tflite::EvalMeanHelper(context, node, &reinterpret_cast<FullMeanData*>(node->user_data)->reduce);
  const TfLiteEvalTensor* input = tflite::micro::GetEvalInput(context, node, 0);
  TfLiteEvalTensor* output = tflite::micro::GetEvalOutput(context, node, 0);
  const MeanData* op_data = &d;

  const int batches = input->dims->data[0], hw = input->dims->data[1] * input->dims->data[2];
  const int channels = input->dims->data[3];
  auto* sums = static_cast<int32_t*>(context->GetScratchBuffer(context, op_data->temp_buffer_idx));
  const int8_t* in = tflite::micro::GetTensorData<int8_t>(input);
  int8_t* out = tflite::micro::GetTensorData<int8_t>(output);
  if (hw == 0) {
    for (int i = 0; i < batches * channels; i++) out[i] = 0;
    return kTfLiteOk;
  }
  // reference_ops::QuantizedMeanOrSum: fold 1/num_elements into the multiplier.
  const int64_t num_elements = hw;
  int shift = 63 - tflite::CountLeadingZeros(static_cast<uint64_t>(num_elements));
  shift = shift < 32 ? shift : 32;
  shift = shift < 31 + op_data->shift ? shift : 31 + op_data->shift;
  const int32_t multiplier =
      static_cast<int32_t>((static_cast<int64_t>(op_data->multiplier) << shift) / num_elements);
  const int out_shift = op_data->shift - shift;
  for (int n = 0; n < batches; n++) {
    const MeanJob job = {in + n * hw * channels, out + n * channels, sums, hw, channels, 0, channels,
                         multiplier, out_shift, op_data->input_zp, op_data->output_zp};
    MeanImage(job);
  }
  return kTfLiteOk;
}

}  // namespace

TFLMRegistration Register_MEAN() {
  return tflite::micro::RegisterOp(MeanInit, MeanPrepare, MeanEval);
}

}  // namespace picotflm
