// The output tensor's elements, for top-1, the differences of `golden` and the switching policy's
// score (raw bytes are compared for `exact` whatever the type).
#ifndef PICOTFLM_APP_OUTPUT_H_
#define PICOTFLM_APP_OUTPUT_H_

#include <stdint.h>
#include <string.h>

#include <type_traits>

#include "model_config.h"
#include "tensorflow/lite/c/common.h"

namespace app {

template <TfLiteType T>
struct Element {
  static_assert(T == kTfLiteInt8, "PICOTFLM_OUTPUT_TYPE must be kTfLiteInt8, kTfLiteUInt8, kTfLiteInt16 or kTfLiteFloat32");
  using type = int8_t;
};
template <>
struct Element<kTfLiteUInt8> {
  using type = uint8_t;
};
template <>
struct Element<kTfLiteInt16> {
  using type = int16_t;
};
template <>
struct Element<kTfLiteFloat32> {
  using type = float;
};
using OutT = Element<PICOTFLM_OUTPUT_TYPE>::type;
constexpr int kOutputElements = PICOTFLM_OUTPUT_BYTES / (int)sizeof(OutT);

inline OutT output_element(const uint8_t* raw, int i) {
  OutT v;
  memcpy(&v, raw + i * sizeof(OutT), sizeof v);
  return v;
}

inline int element_diff(OutT a, OutT b) {
  if constexpr (std::is_integral<OutT>::value) {
    long d = (long)a - (long)b;
    return (int)(d < 0 ? -d : d);
  } else {  // float outputs: the difference rounded up to a whole number
    float d = a > b ? a - b : b - a;
    int di = (int)d;
    return (float)di < d ? di + 1 : di;
  }
}

inline int top1(const uint8_t* out) {
  int best = 0;
  for (int i = 1; i < kOutputElements; i++) {
    if (output_element(out, i) > output_element(out, best)) best = i;
  }
  return best;
}

}  // namespace app

#endif  // PICOTFLM_APP_OUTPUT_H_
