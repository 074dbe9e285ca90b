// The one place that names TFLM's tflite::PopulateConvolutionQuantizationParams by its mangled
// symbol. The link wraps it (firmware/CMakeLists.txt reads the name from the #define below for
// `--wrap`), so TFLM's conv and depthwise Prepare call __wrap_<symbol> (quant_cache.cpp), which
// calls __real_<symbol>, TFLM's own.
#ifndef PICOTFLM_TFLM_POPULATE_H_
#define PICOTFLM_TFLM_POPULATE_H_

#include "tensorflow/lite/c/common.h"

// One line, read as it is by CMake: keep the form `#define PICOTFLM_POPULATE <symbol>`.
#define PICOTFLM_POPULATE _ZN6tflite37PopulateConvolutionQuantizationParamsEP13TfLiteContextPK12TfLiteTensorS4_S4_PS2_RK21TfLiteFusedActivationPlPiS9_S9_S9_S9_i

#define PICOTFLM_CAT_(a, b) a##b
#define PICOTFLM_CAT(a, b) PICOTFLM_CAT_(a, b)
#define PICOTFLM_POPULATE_REAL PICOTFLM_CAT(__real_, PICOTFLM_POPULATE)
#define PICOTFLM_POPULATE_WRAP PICOTFLM_CAT(__wrap_, PICOTFLM_POPULATE)

// TFLM's function and our wrapper, with its parameters.
extern "C" TfLiteStatus PICOTFLM_POPULATE_REAL(
    TfLiteContext* context, const TfLiteTensor* input, const TfLiteTensor* filter, const TfLiteTensor* bias,
    TfLiteTensor* output, const TfLiteFusedActivation& activation, int32_t* multiplier, int* shift,
    int32_t* output_activation_min, int32_t* output_activation_max, int32_t* per_channel_multiplier,
    int32_t* per_channel_shift, int num_channels);
extern "C" TfLiteStatus PICOTFLM_POPULATE_WRAP(
    TfLiteContext* context, const TfLiteTensor* input, const TfLiteTensor* filter, const TfLiteTensor* bias,
    TfLiteTensor* output, const TfLiteFusedActivation& activation, int32_t* multiplier, int* shift,
    int32_t* output_activation_min, int32_t* output_activation_max, int32_t* per_channel_multiplier,
    int32_t* per_channel_shift, int num_channels);

#endif  // PICOTFLM_TFLM_POPULATE_H_
