// The arithmetic of picotflm's FULLY_CONNECTED and SOFTMAX (int8), in plain C with no TFLM
// dependency, so the host can compile it and test it against TFLM's outputs
// (tests/firmware/test_fc_softmax_c.py). FULLY_CONNECTED is TFLM's reference_integer_ops::FullyConnected
// (per-tensor quantization) with pk_requantize; SOFTMAX is TFLM's reference int8 softmax (gemmlowp's
// fixed-point exp on negative values, 5 integer bits of scaled difference, 12 of accumulation), in the
// 32-bit form CMSIS-NN's arm_nn_softmax_common_s8 gives it.
#ifndef PICOTFLM_PK_FC_SOFTMAX_H_
#define PICOTFLM_PK_FC_SOFTMAX_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// out[b][o] = clamp(requantize(sum_d w[o][d] * (in[b][d] + input_offset) + bias[o]) + output_offset).
// Weights OI (row o holds depth d), symmetric (zero point 0). bias may be NULL. Requantization by
// mult[o], shift[o] (per_channel != 0: TFLM's FullyConnectedPerChannel) or mult[0], shift[0].
void pk_fc_s8(const int8_t* in, const int8_t* w, const int32_t* bias, int8_t* out, int32_t batches, int32_t depth,
              int32_t out_c, int32_t input_offset, int32_t output_offset, const int32_t* mult, const int32_t* shift,
              int32_t per_channel, int32_t act_min, int32_t act_max);

// Softmax over the last dimension, `rows` rows of `row_size`, int8 in and out (output zero point -128,
// scale 1/256). `mult`, `left_shift`, `diff_min`: TFLM's SoftmaxParams input_multiplier,
// input_left_shift and diff_min (CalculateSoftmaxParams).
void pk_softmax_s8(const int8_t* in, int8_t* out, int32_t rows, int32_t row_size, int32_t mult, int32_t left_shift,
                   int32_t diff_min);

#ifdef __cplusplus
}
#endif

#endif  // PICOTFLM_PK_FC_SOFTMAX_H_
