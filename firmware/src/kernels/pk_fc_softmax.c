// See pk_fc_softmax.h.
#include "pk_fc_softmax.h"

#include "pk_core.h"

void pk_fc_s8(const int8_t* in, const int8_t* w, const int32_t* bias, int8_t* out, int32_t batches, int32_t depth,
              int32_t out_c, int32_t input_offset, int32_t output_offset, const int32_t* mult, const int32_t* shift,
              int32_t per_channel, int32_t act_min, int32_t act_max) {
    for (int32_t b = 0; b < batches; b++) {
        const int8_t* x = in + b * depth;
        for (int32_t o = 0; o < out_c; o++) {
            const int8_t* row = w + o * depth;
            int32_t acc = 0;
            for (int32_t d = 0; d < depth; d++) acc += (int32_t)row[d] * ((int32_t)x[d] + input_offset);
            if (bias != 0) acc += bias[o];
            int32_t v = pk_requantize(acc, mult[per_channel ? o : 0], shift[per_channel ? o : 0]) + output_offset;
            v = v < act_min ? act_min : v > act_max ? act_max : v;
            out[b * out_c + o] = (int8_t)v;
        }
    }
}

// gemmlowp's SaturatingRoundingDoublingHighMul.
static int32_t mul_sat(int32_t a, int32_t b) {
    if (a == b && a == INT32_MIN) return INT32_MAX;
    const int64_t ab = (int64_t)a * b;
    const int64_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

// gemmlowp's RoundingDivideByPOT.
static int32_t div_pow2(int32_t x, int32_t exponent) {
    const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

// gemmlowp's SaturatingRoundingMultiplyByPOT for a positive exponent.
static int32_t mul_pow2(int32_t x, int32_t exponent) {
    const int32_t thresh = (int32_t)((1u << (31 - exponent)) - 1);
    if (x > thresh) return INT32_MAX;
    if (x < -thresh) return INT32_MIN;
    return (int32_t)((uint32_t)x << exponent);
}

// gemmlowp's exp_on_negative_values for a FixedPoint<int32_t, 5> argument, result FixedPoint<int32_t, 0>.
static int32_t exp_on_negative(int32_t a) {
    const int32_t quarter = 1 << 24;  // 1/4 in 5 integer bits
    const int32_t a_mod_quarter_minus_quarter = (a & (quarter - 1)) - quarter;
    // exp_on_interval_between_negative_one_quarter_and_0_excl of a_mod_quarter_minus_quarter as Q0.31
    const int32_t x = (int32_t)((uint32_t)a_mod_quarter_minus_quarter << 5) + (1 << 28);
    const int32_t x2 = mul_sat(x, x);
    const int32_t x3 = mul_sat(x2, x);
    const int32_t x4 = mul_sat(x2, x2);
    const int32_t x4_over_4 = div_pow2(x4, 2);
    const int32_t poly = div_pow2(mul_sat(x4_over_4 + x3, 715827883) + x2, 1);  // 1/3
    int32_t result = 1895147668 + mul_sat(1895147668, x + poly);                 // exp(-1/8)
    const int32_t remainder = a_mod_quarter_minus_quarter - a;
    static const int32_t kBarrel[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
    for (int i = 0; i < 7; i++)
        if (remainder & (1 << (24 + i))) result = mul_sat(result, kBarrel[i]);
    return a == 0 ? INT32_MAX : result;
}

// gemmlowp's one_over_one_plus_x_for_x_in_0_1 (Newton-Raphson, three steps).
static int32_t one_over_one_plus_x(int32_t a) {
    const int64_t sum = (int64_t)a + INT32_MAX;
    const int32_t half_denominator = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
    int32_t x = 1515870810 + mul_sat(half_denominator, -1010580540);  // 48/17 - 32/17 * d
    for (int i = 0; i < 3; i++) {
        const int32_t one_minus = (1 << 29) - mul_sat(half_denominator, x);
        x += mul_pow2(mul_sat(x, one_minus), 2);
    }
    return mul_pow2(x, 1);
}

static int32_t clz32(uint32_t v) {
    int32_t n = 0;
    if (v == 0) return 32;
    while ((v & 0x80000000u) == 0) {
        v <<= 1;
        n++;
    }
    return n;
}

void pk_softmax_s8(const int8_t* in, int8_t* out, int32_t rows, int32_t row_size, int32_t mult, int32_t left_shift,
                   int32_t diff_min) {
    const int32_t kAccumBits = 12;
    for (int32_t r = 0; r < rows; r++) {
        const int8_t* x = in + r * row_size;
        int8_t* y = out + r * row_size;
        int32_t max = x[0];
        for (int32_t c = 1; c < row_size; c++)
            if (x[c] > max) max = x[c];
        int32_t sum = 0;
        for (int32_t c = 0; c < row_size; c++) {
            const int32_t diff = x[c] - max;
            if (diff >= diff_min)
                sum += div_pow2(exp_on_negative(mul_sat(diff * (1 << left_shift), mult)), kAccumBits);
        }
        const int32_t headroom = clz32((uint32_t)sum);
        const int32_t bits_over_unit = kAccumBits - headroom + 23;
        const int32_t shifted_scale =
            one_over_one_plus_x((int32_t)((sum > 0 ? (uint32_t)sum << headroom : 0u) - 0x80000000u));
        for (int32_t c = 0; c < row_size; c++) {
            const int32_t diff = x[c] - max;
            int32_t v = -128;
            if (diff >= diff_min) {
                v = div_pow2(mul_sat(shifted_scale, exp_on_negative(mul_sat(diff * (1 << left_shift), mult))),
                             bits_over_unit) - 128;
                v = v < -128 ? -128 : v > 127 ? 127 : v;
            }
            y[c] = (int8_t)v;
        }
    }
}
