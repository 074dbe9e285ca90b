// picotflm's kernel arithmetic for the Cortex-M0+; see pk_core.h.
//
// Where the time goes on an M0+ (no SIMD, no 64-bit multiply, 2-cycle loads, 1-cycle 32-bit MUL):
// - The input offset (+128 for int8 inputs with zero point -128) is folded into the bias once per
//   output channel (bias + offset * sum of that channel's weights), so an interior output costs one
//   load, one multiply and one add per weight; only border outputs, where padding is read, add the
//   offset tap by tap.
// - Output channels are computed two at a time, so each input byte is loaded once for both.
// - Requantization uses four 16x16-bit multiplies instead of the library's 64x64-bit routine; the
//   result is identical (the host test checks it against the 64-bit formula).
#include "pk_core.h"

#include <stddef.h>

// The hot loops stay in flash: they are a few hundred bytes, which the RP2040's 16 KB XIP cache
// holds after the first pass, and copying them to SRAM would cost RAM the model needs.
#define PK_HOT

static inline int32_t pk_div_pow2(int32_t dividend, int32_t exponent) {
    if (exponent == 0) return dividend;
    const int32_t mask = (int32_t)((1u << exponent) - 1u);
    const int32_t remainder = dividend & mask;
    int32_t result = dividend >> exponent;
    int32_t threshold = mask >> 1;
    if (result < 0) threshold++;
    if (remainder > threshold) result++;
    return result;
}

static inline int32_t pk_high_mult(int32_t v, int32_t mult) {
    // (v * mult + 2^30) >> 31 (arithmetic), exactly. With |v| < 2^23 and 0 <= mult < 2^31 the 64-bit
    // product is assembled from 16-bit halves without overflow:
    //   v = vh*2^16 + vl, mult = mh*2^16 + ml (vl, ml unsigned 16 bit)
    //   result = 2*vh*mh + floor((vh*ml + vl*mh + (vl*ml >> 16) + 2^14) / 2^15)
    if (v >= -(1 << 23) && v < (1 << 23) && mult >= 0) {
        const uint32_t vl = (uint32_t)v & 0xFFFFu;
        const int32_t vh = v >> 16;
        const uint32_t ml = (uint32_t)mult & 0xFFFFu;
        const int32_t mh = mult >> 16;
        const uint32_t ll = vl * ml;
        const int32_t hl = vh * (int32_t)ml;
        const uint32_t q = vl * (uint32_t)mh + (ll >> 16) + (1u << 14);
        return 2 * (vh * mh) + (int32_t)(q >> 15) + (((int32_t)(q & 0x7FFFu) + hl) >> 15);
    }
    const int64_t prod = (int64_t)v * mult + ((int64_t)1 << 30);
    return (int32_t)(prod >> 31);
}

int32_t pk_requantize(int32_t val, int32_t mult, int32_t shift) {
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    const int32_t v = (int32_t)((uint32_t)val << left);
    return pk_div_pow2(pk_high_mult(v, mult), right);
}

static inline int8_t pk_out(int32_t acc, int32_t mult, int32_t shift, const pk_conv_params* p) {
    int32_t r = pk_requantize(acc, mult, shift) + p->output_offset;
    if (r < p->act_min) r = p->act_min;
    if (r > p->act_max) r = p->act_max;
    return (int8_t)r;
}

// One output channel at a border pixel: taps outside the input read the zero point, i.e. add nothing.
static int32_t conv_border(const pk_conv_params* p, const int8_t* in, const int8_t* wc, int32_t iy0, int32_t ix0) {
    const int32_t c = p->in_c;
    int32_t acc = 0;
    for (int32_t ky = 0; ky < p->k_h; ky++) {
        const int32_t iy = iy0 + ky;
        if (iy < 0 || iy >= p->in_h) continue;
        for (int32_t kx = 0; kx < p->k_w; kx++) {
            const int32_t ix = ix0 + kx;
            if (ix < 0 || ix >= p->in_w) continue;
            const int8_t* x = in + (iy * p->in_w + ix) * c;
            const int8_t* w = wc + (ky * p->k_w + kx) * c;
            for (int32_t i = 0; i < c; i++) acc += (x[i] + p->input_offset) * w[i];
        }
    }
    return acc;
}

// Two output channels of one interior pixel: kh rows of (kw * in_c) contiguous input bytes.
static inline void dot2(const int8_t* x, int32_t rows, int32_t row_len, int32_t row_stride,
                        const int8_t* w0, const int8_t* w1, int32_t* a0, int32_t* a1) {
    int32_t s0 = *a0, s1 = *a1;
    for (int32_t r = 0; r < rows; r++) {
        const int8_t* xe = x + row_len;
        const int8_t* xp = x;
        while (xp < xe) {
            const int32_t v = *xp++;
            s0 += v * *w0++;
            s1 += v * *w1++;
        }
        x += row_stride;
    }
    *a0 = s0;
    *a1 = s1;
}

static inline int32_t dot1(const int8_t* x, int32_t rows, int32_t row_len, int32_t row_stride, const int8_t* w) {
    int32_t s = 0;
    for (int32_t r = 0; r < rows; r++) {
        for (int32_t i = 0; i < row_len; i++) s += x[i] * *w++;
        x += row_stride;
    }
    return s;
}

static int32_t weight_sum(const int8_t* w, int32_t n) {
    int32_t s = 0;
    for (int32_t i = 0; i < n; i++) s += w[i];
    return s;
}

PK_HOT void pk_conv_s8(const pk_conv_params* p, const int8_t* in, const int8_t* w, const int32_t* bias, int8_t* out) {
    const int32_t c = p->in_c, oc_n = p->out_c;
    const int32_t k = p->k_h * p->k_w * c;
    const int32_t row_len = p->k_w * c, row_stride = p->in_w * c;
    for (int32_t oc = 0; oc < oc_n; oc += 2) {
        const int pair = oc + 1 < oc_n;
        const int8_t* w0 = w + oc * k;
        const int8_t* w1 = pair ? w0 + k : w0;
        const int32_t b0 = bias ? bias[oc] : 0;
        const int32_t b1 = pair ? (bias ? bias[oc + 1] : 0) : 0;
        const int32_t be0 = b0 + p->input_offset * weight_sum(w0, k);
        const int32_t be1 = b1 + p->input_offset * weight_sum(w1, k);
        const int32_t m0 = p->mult[oc], s0 = p->shift[oc];
        const int32_t m1 = pair ? p->mult[oc + 1] : 0, s1 = pair ? p->shift[oc + 1] : 0;
        int8_t* o = out + oc;
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            const int rows_in = iy0 >= 0 && iy0 + p->k_h <= p->in_h;
            for (int32_t ox = 0; ox < p->out_w; ox++, o += oc_n) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                int32_t a0, a1;
                if (rows_in && ix0 >= 0 && ix0 + p->k_w <= p->in_w) {
                    const int8_t* x = in + (iy0 * p->in_w + ix0) * c;
                    a0 = be0;
                    a1 = be1;
                    if (pair) {
                        dot2(x, p->k_h, row_len, row_stride, w0, w1, &a0, &a1);
                    } else {
                        a0 += dot1(x, p->k_h, row_len, row_stride, w0);
                    }
                } else {
                    a0 = b0 + conv_border(p, in, w0, iy0, ix0);
                    a1 = pair ? b1 + conv_border(p, in, w1, iy0, ix0) : 0;
                }
                o[0] = pk_out(a0, m0, s0, p);
                if (pair) o[1] = pk_out(a1, m1, s1, p);
            }
        }
    }
}

PK_HOT void pk_dwconv_s8(const pk_conv_params* p, const int8_t* in, const int8_t* w, const int32_t* bias, int8_t* out) {
    const int32_t c_n = p->in_c;
    const int32_t taps = p->k_h * p->k_w;
    const int32_t row_stride = p->in_w * c_n;
    for (int32_t c = 0; c < c_n; c++) {
        const int8_t* wc = w + c;
        int32_t wsum = 0;
        for (int32_t t = 0; t < taps; t++) wsum += wc[t * c_n];
        const int32_t b = bias ? bias[c] : 0;
        const int32_t be = b + p->input_offset * wsum;
        const int32_t m = p->mult[c], s = p->shift[c];
        int8_t* o = out + c;
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            const int rows_in = iy0 >= 0 && iy0 + p->k_h <= p->in_h;
            for (int32_t ox = 0; ox < p->out_w; ox++, o += c_n) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                int32_t acc;
                if (rows_in && ix0 >= 0 && ix0 + p->k_w <= p->in_w) {
                    const int8_t* x = in + (iy0 * p->in_w + ix0) * c_n + c;
                    const int8_t* wt = wc;
                    acc = be;
                    for (int32_t ky = 0; ky < p->k_h; ky++) {
                        const int8_t* xr = x;
                        for (int32_t kx = 0; kx < p->k_w; kx++) {
                            acc += *xr * *wt;
                            xr += c_n;
                            wt += c_n;
                        }
                        x += row_stride;
                    }
                } else {
                    acc = b;
                    for (int32_t ky = 0; ky < p->k_h; ky++) {
                        const int32_t iy = iy0 + ky;
                        if (iy < 0 || iy >= p->in_h) continue;
                        for (int32_t kx = 0; kx < p->k_w; kx++) {
                            const int32_t ix = ix0 + kx;
                            if (ix < 0 || ix >= p->in_w) continue;
                            acc += (in[(iy * p->in_w + ix) * c_n + c] + p->input_offset) * wc[(ky * p->k_w + kx) * c_n];
                        }
                    }
                }
                *o = pk_out(acc, m, s, p);
            }
        }
    }
}

PK_HOT void pk_sum_hw_s8(const int8_t* in, int32_t hw, int32_t c_count, int32_t* sums) {
    for (int32_t c = 0; c < c_count; c++) {
        const int8_t* x = in + c;
        int32_t s = 0;
        for (int32_t i = 0; i < hw; i++, x += c_count) s += *x;
        sums[c] = s;
    }
}
