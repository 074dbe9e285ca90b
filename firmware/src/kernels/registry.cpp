// FindKernel (picotflm_kernels.h): our registrations, each with its builtin code.
#include "picotflm_kernels.h"

namespace picotflm {
namespace {

// The interpreter looks up the op's parser by the registration's builtin_code, which TFLM's
// resolver sets when an op is added: ours carry it from the start.
TFLMRegistration WithCode(TFLMRegistration r, tflite::BuiltinOperator op) {
  r.builtin_code = op;
  return r;
}

// Namespace-scope objects, not function-local statics: a guarded local static pulls libstdc++'s
// __cxa_guard_acquire, and with it the unwinder (4 KB copied to RAM) and its malloc'ed pool.
const TFLMRegistration conv = WithCode(Register_CONV_2D(), tflite::BuiltinOperator_CONV_2D);
const TFLMRegistration depthwise = WithCode(Register_DEPTHWISE_CONV_2D(), tflite::BuiltinOperator_DEPTHWISE_CONV_2D);
const TFLMRegistration mean = WithCode(Register_MEAN(), tflite::BuiltinOperator_MEAN);
const TFLMRegistration fully_connected =
    WithCode(Register_FULLY_CONNECTED(), tflite::BuiltinOperator_FULLY_CONNECTED);
const TFLMRegistration softmax = WithCode(Register_SOFTMAX(), tflite::BuiltinOperator_SOFTMAX);

}  // namespace

const TFLMRegistration* FindKernel(tflite::BuiltinOperator op) {
  switch (op) {
    case tflite::BuiltinOperator_CONV_2D:
      return &conv;
    case tflite::BuiltinOperator_DEPTHWISE_CONV_2D:
      return &depthwise;
    case tflite::BuiltinOperator_MEAN:
      return &mean;
    case tflite::BuiltinOperator_FULLY_CONNECTED:
      return &fully_connected;
    case tflite::BuiltinOperator_SOFTMAX:
      return &softmax;
    default:
      return nullptr;
  }
}

}  // namespace picotflm
