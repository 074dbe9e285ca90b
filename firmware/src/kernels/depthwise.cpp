// DEPTHWISE_CONV_2D (depth multiplier 1): TFLM's own Prepare, our Eval (pk_core.c) on a padded copy
// of the input when the op has padding. One input channel with a depth multiplier (every output
// channel reads the same input: a first layer on a grayscale image) is a CONV_2D with in_c = 1 and
// runs as one (AsConv). TFLM's reference kernel for what the fast paths do not cover.
#include "conv_data.h"
#include "conv_run.h"
#include "tensorflow/lite/c/builtin_op_data.h"
#include "tensorflow/lite/kernels/internal/reference/integer_ops/depthwise_conv.h"
#include "tensorflow/lite/micro/kernels/depthwise_conv.h"

namespace picotflm {
namespace {

using tflite::OpDataConv;

__attribute__((noinline)) void DepthwiseReference(const TfLiteDepthwiseConvParams& params, const OpDataConv& data,
                                                  const TfLiteEvalTensor* input, const TfLiteEvalTensor* filter,
                                                  const TfLiteEvalTensor* bias, const TfLiteEvalTensor* output,
                                                  const int8_t* in, const int8_t* w, const int32_t* b, int8_t* out) {
  tflite::reference_integer_ops::DepthwiseConvPerChannel(
      tflite::DepthwiseConvParamsQuantized(params, data), data.per_channel_output_multiplier,
      data.per_channel_output_shift, tflite::micro::GetTensorShape(input), in, tflite::micro::GetTensorShape(filter),
      w, tflite::micro::GetTensorShape(bias), b, tflite::micro::GetTensorShape(output), out);
}

// A scratch buffer for the input with its padding written out, so that every output is an interior
// one (border outputs cost several times more). The buffer lives only while the op runs; TFLM's
// planner places it beside the activations of that moment. Its size follows from the output's: the
// rows and columns the kernel's windows cover.
int PaddedH(const pk_conv_params& p) { return (p.out_h - 1) * p.stride_h + p.k_h; }
int PaddedW(const pk_conv_params& p) { return (p.out_w - 1) * p.stride_w + p.k_w; }

// A depthwise conv of one input channel with the depth multiplier equal to its output channels: the
// CONV_2D with in_c = 1 whose weights (OHWI) are the depthwise ones (1HWC) transposed, at most
// kAsConvWeights of them (they are transposed onto the stack at each Eval).
constexpr int kAsConvWeights = 144;

bool AsConv(const TfLiteDepthwiseConvParams& params, const TfLiteEvalTensor* input, const TfLiteEvalTensor* filter,
            const TfLiteEvalTensor* output) {
  return input->dims->data[3] == 1 && params.depth_multiplier == output->dims->data[3] &&
         filter->dims->data[3] == output->dims->data[3] &&
         filter->dims->data[1] * filter->dims->data[2] * output->dims->data[3] <= kAsConvWeights &&
         params.dilation_height_factor == 1 && params.dilation_width_factor == 1;
}

// Eval of an AsConv op: the weights transposed to OHWI, then the convolution's kernels and its split
// between the cores, as for a CONV_2D. noinline: the transposed weights sit on this frame only.
__attribute__((noinline)) TfLiteStatus EvalAsConv(TfLiteContext* context, const pk_conv_params& p_dw,
                                                  const int8_t* in, const int8_t* w, const int32_t* b, int8_t* out,
                                                  int batches) {
  int8_t ohwi[kAsConvWeights];
  const int taps = p_dw.k_h * p_dw.k_w, oc_n = p_dw.out_c;
  for (int oc = 0; oc < oc_n; oc++)
    for (int t = 0; t < taps; t++) ohwi[oc * taps + t] = w[t * oc_n + oc];
  const int in_size = p_dw.in_h * p_dw.in_w, out_size = p_dw.out_h * p_dw.out_w * oc_n;
  for (int n = 0; n < batches; n++) {
    TF_LITE_ENSURE_MSG(context, RunConv(&p_dw, in + n * in_size, ohwi, b, out + n * out_size, false),
                       "picotflm DEPTHWISE_CONV_2D: the output overlaps input rows still to be read (memory plan)");
  }
  return kTfLiteOk;
}

TfLiteStatus DepthwisePrepare(TfLiteContext* context, TfLiteNode* node) {
  const auto& params = *static_cast<const TfLiteDepthwiseConvParams*>(node->builtin_data);
  const TfLiteEvalTensor* input = tflite::micro::GetEvalInput(context, node, tflite::kDepthwiseConvInputTensor);
  const TfLiteEvalTensor* filter = tflite::micro::GetEvalInput(context, node, tflite::kDepthwiseConvWeightsTensor);
  const TfLiteEvalTensor* output = tflite::micro::GetEvalOutput(context, node, tflite::kDepthwiseConvOutputTensor);
  const TfLiteEvalTensor* bias = node->inputs->size == 3
                                     ? tflite::micro::GetEvalInput(context, node, tflite::kDepthwiseConvBiasTensor)
                                     : nullptr;
  TF_LITE_ENSURE(context, input != nullptr && filter != nullptr && output != nullptr);
  TF_LITE_ENSURE(context, input->dims->size == 4 && filter->dims->size == 4 && output->dims->size == 4);
  // What DepthwiseEval's fast path needs (it checks each again and refuses the rest with an error).
  const bool fast = input->type == kTfLiteInt8 && (filter->type == kTfLiteInt8 || filter->type == kTfLiteInt4) &&
                    (bias == nullptr || bias->type == kTfLiteInt32) && params.dilation_height_factor == 1 &&
                    params.dilation_width_factor == 1 &&
                    ((params.depth_multiplier == 1 && input->dims->data[3] == output->dims->data[3]) ||
                     AsConv(params, input, filter, output));
  pk_conv_params p;
  p.out_h = output->dims->data[1];
  p.out_w = output->dims->data[2];
  p.stride_h = params.stride_height;
  p.stride_w = params.stride_width;
  p.k_h = filter->dims->data[1];
  p.k_w = filter->dims->data[2];
  const int in_h = input->dims->data[1], in_w = input->dims->data[2], c = input->dims->data[3];
  const bool int8_3x3 = input->type == kTfLiteInt8 && p.k_h == 3 && p.k_w == 3 && params.dilation_height_factor == 1 &&
                        params.dilation_width_factor == 1 && params.depth_multiplier == 1 &&
                        input->dims->data[0] == 1 && PaddedH(p) >= in_h && PaddedW(p) >= in_w;
  ConvData rec;
  TF_LITE_ENSURE_STATUS(PrepareConvData(context, node, tflite::DepthwiseConvPrepare, fast, &rec));
  auto* d = static_cast<ConvData*>(node->user_data);
  const OpDataConv* data = Full(*d);
  const int pad_h = data ? data->padding.height : d->pad_h, pad_w = data ? data->padding.width : d->pad_w;
  const bool padded = pad_h > 0 || pad_w > 0 || PaddedH(p) > in_h || PaddedW(p) > in_w;
  if (int8_3x3 && padded) {
    int idx = -1;
    TF_LITE_ENSURE_STATUS(context->RequestScratchBufferInArena(context, PaddedH(p) * PaddedW(p) * c, &idx));
    TF_LITE_ENSURE(context, idx >= 0 && idx <= 32767);
    d->aux = static_cast<int16_t>(idx);
  }
  return KeepConvData(context, node, &rec);
}

TfLiteStatus DepthwiseEval(TfLiteContext* context, TfLiteNode* node) {
  const auto& params = *static_cast<const TfLiteDepthwiseConvParams*>(node->builtin_data);
  const ConvData& d = *static_cast<const ConvData*>(node->user_data);
  const OpDataConv* data = Full(d);
  const TfLiteEvalTensor* input = tflite::micro::GetEvalInput(context, node, tflite::kDepthwiseConvInputTensor);
  const TfLiteEvalTensor* filter = tflite::micro::GetEvalInput(context, node, tflite::kDepthwiseConvWeightsTensor);
  const TfLiteEvalTensor* bias = node->inputs->size == 3
                                     ? tflite::micro::GetEvalInput(context, node, tflite::kDepthwiseConvBiasTensor)
                                     : nullptr;
  TfLiteEvalTensor* output = tflite::micro::GetEvalOutput(context, node, tflite::kDepthwiseConvOutputTensor);
  TF_LITE_ENSURE_MSG(context, input->type == kTfLiteInt8, "picotflm DEPTHWISE_CONV_2D: only int8 activations");
  TF_LITE_ENSURE_MSG(context, filter->type == kTfLiteInt8 || filter->type == kTfLiteInt4,
                     "picotflm DEPTHWISE_CONV_2D: only int8 or int4 weights");
  TF_LITE_ENSURE_MSG(context, bias == nullptr || bias->type == kTfLiteInt32,
                     "picotflm DEPTHWISE_CONV_2D: int32 bias only");
  const int8_t* w = FilterInt8(context, filter, data ? data->filter_buffer_index : d.filter_buffer_index);
  const int32_t* b = bias ? tflite::micro::GetTensorData<int32_t>(bias) : nullptr;
  const int8_t* in = tflite::micro::GetTensorData<int8_t>(input);
  int8_t* out = tflite::micro::GetTensorData<int8_t>(output);

  const bool as_conv = AsConv(params, input, filter, output);
  const bool fast = params.dilation_height_factor == 1 && params.dilation_width_factor == 1 &&
                    ((params.depth_multiplier == 1 && input->dims->data[3] == output->dims->data[3]) || as_conv);
  if (!fast) {
    TF_LITE_ENSURE_MSG(context, data != nullptr,
                       "picotflm DEPTHWISE_CONV_2D: the op's data was prepared for the fast path");
    TF_LITE_ENSURE_MSG(context, !Overlap(input, output),
                       "picotflm DEPTHWISE_CONV_2D: the plan put the output over the input of an op it cannot run in place");
    DepthwiseReference(params, *data, input, filter, bias, output, in, w, b, out);
    return kTfLiteOk;
  }
  pk_conv_params p = Params(input->dims, filter->dims, output->dims, params.stride_height, params.stride_width, d);
  if (as_conv) return EvalAsConv(context, p, in, w, b, out, input->dims->data[0]);
  if (d.aux >= 0) {
    int8_t* padded = static_cast<int8_t*>(context->GetScratchBuffer(context, d.aux));
    const int ph = PaddedH(p), pw = PaddedW(p);
    pk_pad_s8(in, p.in_h, p.in_w, p.in_c, padded, ph, pw, p.pad_h, p.pad_w, static_cast<int8_t>(-p.input_offset));
    p.in_h = ph;
    p.in_w = pw;
    p.pad_h = 0;
    p.pad_w = 0;
    TF_LITE_ENSURE_MSG(context, RunConv(&p, padded, w, b, out, true),
                       "picotflm DEPTHWISE_CONV_2D: the output overlaps its padded input");
    return kTfLiteOk;
  }
  const int in_size = p.in_h * p.in_w * p.in_c, out_size = p.out_h * p.out_w * p.out_c;
  for (int n = 0; n < input->dims->data[0]; n++) {
    TF_LITE_ENSURE_MSG(context, RunConv(&p, in + n * in_size, w, b, out + n * out_size, true),
                       "picotflm DEPTHWISE_CONV_2D: the output overlaps input rows still to be read (memory plan)");
  }
  return kTfLiteOk;
}

}  // namespace

TFLMRegistration Register_DEPTHWISE_CONV_2D() {
  return tflite::micro::RegisterOp(ConvDataInit, DepthwisePrepare, DepthwiseEval);
}

}  // namespace picotflm
