// picotflm's kernel arithmetic for the Cortex-M0+; see pk_core.h.
//
// Where the time goes on an M0+ (no SIMD, no 64-bit multiply, 2-cycle loads, 1-cycle 32-bit MUL):
// - The input offset (+128 for int8 inputs with zero point -128) is folded into the bias once per
//   output channel (bias + offset * sum of that channel's weights), so an interior output costs one
//   load, one multiply and one add per weight; only border outputs, where padding is read, add the
//   offset tap by tap.
// - Output channels are computed four at a time, so each input byte is loaded once for all four.
// - Requantization uses four 16x16-bit multiplies instead of the library's 64x64-bit routine; the
//   result is identical (the host test checks it against the 64-bit formula).
#include "pk_core.h"

#include <stddef.h>
#include <stdint.h>
#include <limits.h>

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

__attribute__((always_inline)) static inline int32_t pk_high_mult(int32_t v, int32_t mult) {
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

// One output channel's requantization, decoded once per channel instead of once per output.
typedef struct {
    int32_t mult, left, right, mask, threshold;
    uint32_t ml;  // mult's low 16 bits
    int32_t mh;   // mult's high bits
} pk_quant;

static inline pk_quant pk_quant_of(int32_t mult, int32_t shift) {
    pk_quant q;
    q.mult = mult;
    q.left = shift > 0 ? shift : 0;
    q.right = shift > 0 ? 0 : -shift;
    q.mask = (int32_t)((1u << q.right) - 1u);
    q.threshold = q.mask >> 1;
    q.ml = (uint32_t)mult & 0xFFFFu;
    q.mh = mult >> 16;
    return q;
}

static inline int8_t pk_clamp_out(int32_t h, const pk_quant* q, int32_t out_offset, int32_t lo, int32_t hi) {
    int32_t r = h >> q->right;
    if ((h & q->mask) > q->threshold + (r < 0)) r++;
    r += out_offset;
    if (r < lo) r = lo;
    if (r > hi) r = hi;
    return (int8_t)r;
}

__attribute__((always_inline)) static inline int8_t pk_out_q(int32_t acc, const pk_quant* q, int32_t out_offset,
                                                             int32_t lo, int32_t hi) {
    return pk_clamp_out(pk_high_mult((int32_t)((uint32_t)acc << q->left), q->mult), q, out_offset, lo, hi);
}

// The same when the caller has proven |acc << left| < 2^23 and mult >= 0 (pk_fits): no range test,
// the multiplier's halves precomputed.
__attribute__((always_inline)) static inline int8_t pk_out_fast(int32_t acc, const pk_quant* q, int32_t out_offset,
                                                                int32_t lo, int32_t hi) {
    const int32_t v = (int32_t)((uint32_t)acc << q->left);
    const uint32_t vl = (uint32_t)v & 0xFFFFu;
    const int32_t vh = v >> 16;
    const uint32_t qq = vl * (uint32_t)q->mh + ((vl * q->ml) >> 16) + (1u << 14);
    const int32_t h = 2 * (vh * q->mh) + (int32_t)(qq >> 15) + (((int32_t)(qq & 0x7FFFu) + vh * (int32_t)q->ml) >> 15);
    return pk_clamp_out(h, q, out_offset, lo, hi);
}

// The largest accumulator whose output is clamped to lo (the requantization is non-decreasing, so
// every accumulator at or below it gives lo): after a ReLU about half of all outputs, which then
// cost one compare instead of a requantization. Estimated by one division, then confirmed exactly
// with pk_out_q; INT32_MIN (never taken) when it cannot be confirmed.
static int32_t pk_lo_threshold(const pk_quant* q, int32_t out_offset, int32_t lo, int32_t hi) {
    const int32_t never = INT32_MIN;
    const int64_t span = (int64_t)lo - out_offset;
    if (q->mult <= 0 || q->right > 20 || span < -512 || span > 512) return never;
    int64_t a = ((2 * span + 1) * ((int64_t)1 << (30 + q->right))) / q->mult;
    a >>= q->left;
    if (a < -(1 << 23)) a = -(1 << 23);
    if (a > (1 << 23)) a = 1 << 23;
    int32_t t = (int32_t)a;
    for (int i = 0; i < 64 && pk_out_q(t + 1, q, out_offset, lo, hi) == lo; i++) t++;
    for (int i = 0; i < 64 && pk_out_q(t, q, out_offset, lo, hi) != lo; i++) t--;
    if (pk_out_q(t, q, out_offset, lo, hi) != lo || pk_out_q(t + 1, q, out_offset, lo, hi) == lo) return never;
    return t;
}

int32_t pk_lo_threshold_of(int32_t mult, int32_t shift, int32_t out_offset, int32_t lo, int32_t hi) {
    const pk_quant q = pk_quant_of(mult, shift);
    return pk_lo_threshold(&q, out_offset, lo, hi);
}

// pk_fits with sum|w| already known.
static int pk_fits_sum(int32_t be, uint32_t abs_w_sum, const pk_quant* q) {
    const uint32_t bound = (uint32_t)(be < 0 ? -be : be) + 128u * abs_w_sum;
    return q->mult >= 0 && q->left < 8 && bound < (1u << (23 - q->left));
}

// Whether every accumulator of a channel stays within pk_out_fast's range: |bias_eff| + 128 * sum|w|.
static int pk_fits(int32_t be, const int8_t* w, int32_t n, int32_t step, const pk_quant* q) {
    uint32_t bound = (uint32_t)(be < 0 ? -be : be);
    for (int32_t i = 0; i < n; i++) {
        const int32_t x = w[i * step];
        bound += 128u * (uint32_t)(x < 0 ? -x : x);
    }
    return q->mult >= 0 && q->left < 8 && bound < (1u << (23 - q->left));
}

// The taps of one output at (iy0, ix0) that lie inside the input (those outside read the zero point,
// i.e. add nothing): pixel and tap bases `stride` bytes apart, n bytes summed at each. A conv output
// channel: stride = n = in_c; a depthwise channel c: stride = in_c, n = 1, in and w offset by c.
static int32_t taps_inside(const pk_conv_params* p, const int8_t* in, const int8_t* w, int32_t stride, int32_t n,
                           int32_t iy0, int32_t ix0) {
    int32_t acc = 0;
    for (int32_t ky = 0; ky < p->k_h; ky++) {
        const int32_t iy = iy0 + ky;
        if (iy < 0 || iy >= p->in_h) continue;
        for (int32_t kx = 0; kx < p->k_w; kx++) {
            const int32_t ix = ix0 + kx;
            if (ix < 0 || ix >= p->in_w) continue;
            const int8_t* x = in + (iy * p->in_w + ix) * stride;
            const int8_t* wt = w + (ky * p->k_w + kx) * stride;
            for (int32_t i = 0; i < n; i++) acc += (x[i] + p->input_offset) * wt[i];
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

// Four output channels of one interior pixel. On the M0+ the inner loop is hand-scheduled: the
// eight operands that ldrsb/muls need sit in r0-r7, the four sums in r8-r11, and the index counts up
// from -len to 0 so the loop needs no compare: 21 cycles per input byte for four MACs.
static inline void dot4(const int8_t* x, int32_t rows, int32_t row_len, int32_t row_stride,
                        const int8_t* w0, int32_t k, int32_t* acc) {
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    const int8_t* w1 = w0 + k;
    const int8_t* w2 = w1 + k;
    const int8_t* w3 = w2 + k;
    for (int32_t r = 0; r < rows; r++) {
        const int8_t* xe = x + row_len;
#if defined(__ARM_ARCH_6M__)
        int32_t i = -row_len, xv, t;
        const int8_t *e0 = w0 + row_len, *e1 = w1 + row_len, *e2 = w2 + row_len, *e3 = w3 + row_len;
        __asm__ volatile(
            "1:\n\t"
            "ldrsb %[xv], [%[xe], %[i]]\n\t"
            "ldrsb %[t], [%[e0], %[i]]\n\t"
            "mul %[t], %[xv]\n\t"
            "add %[a0], %[t]\n\t"
            "ldrsb %[t], [%[e1], %[i]]\n\t"
            "mul %[t], %[xv]\n\t"
            "add %[a1], %[t]\n\t"
            "ldrsb %[t], [%[e2], %[i]]\n\t"
            "mul %[t], %[xv]\n\t"
            "add %[a2], %[t]\n\t"
            "ldrsb %[t], [%[e3], %[i]]\n\t"
            "mul %[t], %[xv]\n\t"
            "add %[a3], %[t]\n\t"
            "add %[i], #1\n\t"
            "bne 1b\n\t"
            : [a0] "+h"(a0), [a1] "+h"(a1), [a2] "+h"(a2), [a3] "+h"(a3), [i] "+l"(i), [xv] "=&l"(xv),
              [t] "=&l"(t)
            : [xe] "l"(xe), [e0] "l"(e0), [e1] "l"(e1), [e2] "l"(e2), [e3] "l"(e3)
            : "cc");
        w0 = e0;
        w1 = e1;
        w2 = e2;
        w3 = e3;
#else
        for (const int8_t* xp = x; xp < xe; xp++) {
            const int32_t v = *xp;
            a0 += v * *w0++;
            a1 += v * *w1++;
            a2 += v * *w2++;
            a3 += v * *w3++;
        }
#endif
        x += row_stride;
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
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

// Output channels [oc, oc + n) (n = 1 or 2: the channels left over after the groups of four) over
// every output pixel.
__attribute__((noinline)) static void conv_group(const pk_conv_params* p, const int8_t* in, const int8_t* w, const int32_t* bias,
                       int8_t* out, int32_t oc, int32_t n) {
    const int32_t c = p->in_c, oc_n = p->out_c;
    const int32_t k = p->k_h * p->k_w * c;
    const int32_t row_len = p->k_w * c, row_stride = p->in_w * c;
    int32_t b[2], be[2];
    pk_quant q[2];
    for (int32_t j = 0; j < n; j++) {
        b[j] = bias ? bias[oc + j] : 0;
        be[j] = b[j] + p->input_offset * weight_sum(w + (oc + j) * k, k);
        q[j] = pk_quant_of(p->mult[oc + j], p->shift[oc + j]);
    }
    const int8_t* w0 = w + oc * k;
    int8_t* o = out + oc;
    for (int32_t oy = 0; oy < p->out_h; oy++) {
        const int32_t iy0 = oy * p->stride_h - p->pad_h;
        const int rows_in = iy0 >= 0 && iy0 + p->k_h <= p->in_h;
        for (int32_t ox = 0; ox < p->out_w; ox++, o += oc_n) {
            const int32_t ix0 = ox * p->stride_w - p->pad_w;
            int32_t a[2];
            if (rows_in && ix0 >= 0 && ix0 + p->k_w <= p->in_w) {
                const int8_t* x = in + (iy0 * p->in_w + ix0) * c;
                a[0] = be[0];
                if (n == 2) {
                    a[1] = be[1];
                    dot2(x, p->k_h, row_len, row_stride, w0, w0 + k, &a[0], &a[1]);
                } else {
                    a[0] += dot1(x, p->k_h, row_len, row_stride, w0);
                }
            } else {
                for (int32_t j = 0; j < n; j++) a[j] = b[j] + taps_inside(p, in, w0 + j * k, p->in_c, p->in_c, iy0, ix0);
            }
            for (int32_t j = 0; j < n; j++) o[j] = pk_out_q(a[j], &q[j], p->output_offset, p->act_min, p->act_max);
        }
    }
}

// pk_span4's arguments (pk_dot_m0.S reads them at fixed offsets, checked below).
// half = 2^(right - 1): the assembly rounds (h + half - (h < 0)) >> right, TFLM's rounding shift for
// right >= 1. The assembly spans need right >= 1 and a confirmed lo_at (not INT32_MIN): they skip
// the clamp to lo above it.
typedef struct {
    int32_t lo_at, mh, ml, right, half, out_off, lo, hi;
} pk_span_ch;

// A conv channel's requantization for the spans: pk_span_ch (which REQ reads), then the fields of
// the shorter exact path REQF takes for lo_at < acc <= lo_at + lim (pk_fit_of; lim = 0: never), then
// the folded bias be and lo_rel = lo_at - be: the spans' sums start at 0, REQF compares a sum with
// lo_rel and adds be only before the full REQ.
typedef struct {
    pk_span_ch ch;
    int32_t lim, pl, ml, mh, klo, khi, sh;
    int32_t lo_rel, be;
} pk_span_fch;

typedef struct {
    const int8_t* w0;
    int32_t k, rows, row_len, row_stride, x_step, o_step;
    int32_t be[4];
    const pk_span_fch* ch;  // the four channels' requantization: pk_group4's own, or a host record's
} pk_span4_args;

// REQF's exact short path. With acc = lo_at + a, 0 < a <= lim <= 0xFFFF, mult = mh * 2^16 + ml and
// P = lo_at * mult + 2^30 = Ph * 2^16 + Pl (0 <= Pl < 2^16), REQ's
//   out = ((h + half - (h < 0)) >> right) + out_off,   h = (acc * mult + 2^30) >> 31
// is floor((V + K) / 2^sh), sh = 15 + right, with V = a * mh + ((a * ml + Pl) >> 16) - 2^15 (h < 0)
// and K = Ph + half * 2^15 + out_off * 2^sh: h = floor(W / 2^15) with W the first two terms plus Ph,
// and floors of floors by powers of two merge. With K = Khi * 2^sh + Klo (0 <= Klo < 2^sh) that is
// Khi + floor((V + Klo) / 2^sh). a * ml + Pl < 2^32 and a * mh < 2^31 (mh < 2^15) for a <= 0xFFFF;
// h < 0 exactly when acc < 0 because mult > 2^30; lim keeps V + Klo below 2^31, and acc at or below
// ((hi - out_off) * 2^(31 + right)) / mult, where acc * mult / 2^(31 + right) <= hi - out_off, so
// that both roundings stay at or below hi - out_off and no clamp is needed. Two multiplies and a
// shift replace REQ's four multiplies, its rounding steps and its clamp. lim also keeps every acc of
// the range on one side of zero: at or below -1 when lo_at < -1 (the -2^15 then folded into Klo), so
// that REQF has no sign to test.
static void pk_fit_of(pk_span_fch* f, const pk_quant* q, int32_t out_off) {
    f->lim = f->pl = f->ml = f->mh = f->klo = f->khi = f->sh = 0;
    const int32_t lo_at = f->ch.lo_at;
    if (lo_at == INT32_MIN || q->left != 0 || q->right < 1 || q->right > 15 || q->mult <= (1 << 30) ||
        f->ch.hi < out_off)
        return;
    // 32-bit arithmetic only: this runs for every channel of every conv call. P's low 32 bits wrap
    // exactly; its bits from 31 on are h0 = REQ's h at lo_at. So Ph = h0 * 2^15 + (bits 16..30 of P)
    // and, with hh = h0 + half, Khi = (hh >> right) + out_off, Klo = (hh mod 2^right) * 2^15 + those bits.
    const uint32_t p32 = (uint32_t)lo_at * (uint32_t)q->mult + (1u << 30);
    const int32_t right = q->right;
    const int32_t hh = pk_high_mult(lo_at, q->mult) + (1 << (right - 1));
    uint32_t klo = ((uint32_t)(hh & ((1 << right) - 1)) << 15) + ((p32 >> 16) & 0x7FFFu);
    int32_t khi = (hh >> right) + out_off;
    const int negative = lo_at < -1;  // every acc of the range below zero: V's -2^15 goes into K
    if (negative) {
        if (klo < (1u << 15)) {  // K - 2^15 = (Khi - 1) * 2^sh + (Klo - 2^15 + 2^sh)
            klo += (1u << (15 + right)) - (1u << 15);
            khi -= 1;
        } else {
            klo -= 1u << 15;
        }
    }
    const uint32_t step = ((uint32_t)q->mult >> 16) + 1u;  // V + Klo <= Klo + a * step
    // top: at most (hi - out_off) * 2^(31 + right) / mult = n * 2^31 / mult, n = (hi - out_off) * 2^right,
    // without a division: 2^31 / mult >= 1 + d / 2^31 (d = 2^31 - mult), every product floored.
    const uint32_t n = (uint32_t)(f->ch.hi - out_off) << right, d = 0x80000000u - (uint32_t)q->mult;
    const int32_t top = (int32_t)(n + (((n >> 7) * (d >> 16)) >> 8)) - lo_at;
    int32_t lim = top < 0xFFFF ? top : 0xFFFF;
    if (negative && lim > -1 - lo_at) lim = -1 - lo_at;
    while (lim > 0 && (uint32_t)lim * step + klo > (uint32_t)INT32_MAX) lim >>= 1;
    if (lim <= 0) return;
    f->pl = (int32_t)(p32 & 0xFFFFu);
    f->ml = (int32_t)((uint32_t)q->mult & 0xFFFFu);
    f->mh = q->mult >> 16;
    f->klo = (int32_t)klo;
    f->khi = khi;
    f->sh = 15 + right;
    f->lim = lim;
}

// REQF's short path, for lo_at < acc <= lo_at + f->lim (the arithmetic wraps as the M0+'s does; no
// clamp).
static int32_t pk_out_fit(int32_t acc, const pk_span_fch* f) {
    const uint32_t a = (uint32_t)acc - (uint32_t)f->ch.lo_at;
    uint32_t t = (a * (uint32_t)f->ml + (uint32_t)f->pl) >> 16;
    t += a * (uint32_t)f->mh;
    t += (uint32_t)f->klo;
    return ((int32_t)t >> f->sh) + f->khi;
}

int32_t pk_fit_outputs(int32_t mult, int32_t shift, int32_t out_offset, int32_t lo, int32_t hi, int32_t n,
                       int8_t* out, int32_t* lo_at) {
    const pk_quant q = pk_quant_of(mult, shift);
    pk_span_fch f;
    f.ch.lo_at = pk_lo_threshold(&q, out_offset, lo, hi);
    f.ch.hi = hi;
    *lo_at = f.ch.lo_at;
    pk_fit_of(&f, &q, out_offset);
    for (int32_t a = 1; a <= n && a <= f.lim; a++) out[a - 1] = (int8_t)pk_out_fit(f.ch.lo_at + a, &f);
    return f.lim;
}

#if UINTPTR_MAX == 0xFFFFFFFFu  // the layout pk_dot_m0.S sees (32-bit pointers)
_Static_assert(offsetof(pk_span4_args, x_step) == 20, "pk_span4 reads x_step at 20");
_Static_assert(offsetof(pk_span4_args, be) == 28, "pk_span4 reads be at 28");
_Static_assert(offsetof(pk_span4_args, ch) == 44, "pk_span4 reads the pointer ch at 44");
_Static_assert(PK_GROUP_RECORD * 4 == 4 * sizeof(pk_span_fch), "a group record: four pk_span_fch");
_Static_assert(sizeof(pk_span_ch) == 32, "REQ reads pk_span_ch, CH_SIZE = 32 bytes");
_Static_assert(sizeof(pk_span_fch) == 68 && offsetof(pk_span_fch, lim) == 32 && offsetof(pk_span_fch, sh) == 56 &&
                   offsetof(pk_span_fch, lo_rel) == 60 && offsetof(pk_span_fch, be) == 64,
               "REQF reads QF_LIM at 32 .. QF_BE at 64; the spans step FCH_SIZE = 68 bytes per channel");
_Static_assert(offsetof(pk_span_ch, half) == 16 && offsetof(pk_span_ch, hi) == 28, "REQ reads CH_HALF, CH_HI");
#endif

// pk_span_dw3's arguments (the requantization first: the assembly reads it at the base pointer).
typedef struct {
    pk_span_ch ch;
    int32_t w[9];
    int32_t be, x_step, o_step, c_n, row_stride;
} pk_dw3_args;

#if UINTPTR_MAX == 0xFFFFFFFFu
_Static_assert(offsetof(pk_dw3_args, w) == 32, "pk_span_dw3 reads w at 32");
_Static_assert(offsetof(pk_dw3_args, be) == 68, "pk_span_dw3 reads be at 68");
_Static_assert(offsetof(pk_dw3_args, row_stride) == 84, "pk_span_dw3 reads row_stride at 84");
#endif

// pk_dw3_pairs_s1 / _s2's arguments, copied whole into the assembly's frame (the same offsets there).
typedef struct {
    pk_span_ch ch;
    int32_t w[9];
    int32_t be, c_n;
    int32_t row_adv;     // from a kernel row's last tap pointer to the next row's first: row_stride - stride * c_n
    int32_t x_row_skip;  // from a row's last pair's input to the next row's: stride_h * row_stride - pairs * 2 * stride_w * c_n
    int32_t o_row_step;  // bytes between two output rows: out_w * c_n, 2 * pairs of them (an even width)
    int32_t pairs, rows;
} pk_dw3p_args;

#if UINTPTR_MAX == 0xFFFFFFFFu
_Static_assert(offsetof(pk_dw3p_args, w) == 32 && offsetof(pk_dw3p_args, be) == 68, "F_W, F_BE");
_Static_assert(offsetof(pk_dw3p_args, row_adv) == 76 && offsetof(pk_dw3p_args, rows) == 92, "F_ROW_ADV, F_ROWS");
_Static_assert(sizeof(pk_dw3p_args) == 96, "the assembly copies 24 words");
#endif

#if defined(__ARM_ARCH_6M__)
void pk_span_dw3(const pk_dw3_args* a, const int8_t* x, int8_t* o, int32_t count);
void pk_dw3_pairs_s1(const pk_dw3p_args* a, const int8_t* x, int8_t* o);
void pk_dw3_pairs_s2(const pk_dw3p_args* a, const int8_t* x, int8_t* o);
// The same when every accumulator above lo_at is in [0, 2^16): ch.mh / ch.ml the halves of
// mult << left, ch.half = 2^14 (+ 2^(right + 14) when right > 0), ch.right = right + 15 (DWREQ16 in
// pk_dot_m0.S).
void pk_dw3_pairs16_s1(const pk_dw3p_args* a, const int8_t* x, int8_t* o);
void pk_dw3_pairs16_s2(const pk_dw3p_args* a, const int8_t* x, int8_t* o);
// pk_dot_m0.S: args = {k, rows, row_len, row_stride}.
void pk_dot4_rows(const int8_t* x, const int8_t* w0, const int32_t* args, int32_t* acc);
void pk_span4(const pk_span4_args* a, const int8_t* x, int8_t* o, int32_t count);
void pk_span4w(const pk_span4_args* a, const int8_t* x, int8_t* o, int32_t count);
#endif

// What one group of four output channels needs, gathered so the per-pixel loop keeps few live values.
typedef struct {
    const int8_t* w0;  // weights of the group's first channel; the other three follow, k apart
    int32_t k, rows, row_len, row_stride;  // in this order: pk_dot4_rows reads them as an array
    pk_quant q[4];     // (each channel's folded bias and ReLU threshold: args.be, args.ch[].lo_at)
    int32_t out_off, lo, hi;
    int fast;          // every channel passes pk_fits
    int asm_span;      // fast, no left shift: pk_span4 (M0+ assembly) takes the interior spans
    int wide;          // ... and pk_span4w, with the weights expanded by the host (p->wx)
    pk_span4_args args;
    pk_span_fch chs[4];  // args.ch when computed here
    const int32_t* w8;   // the pair's one weight stream (p->wx8) when this group leads a pair, or NULL
} pk_group4;

// `count` output pixels of one row whose patches need no padding: x steps by x_step, o by o_step.
__attribute__((always_inline)) static inline void span4_body(const pk_group4* g, const int8_t* x, int32_t x_step,
                                                             int8_t* o, int32_t o_step, int32_t count, int fast) {
    const int32_t out_off = g->out_off, lo = g->lo, hi = g->hi;
    for (; count > 0; count--, x += x_step, o += o_step) {
        int32_t a[4] = {g->args.be[0], g->args.be[1], g->args.be[2], g->args.be[3]};
#if defined(__ARM_ARCH_6M__)
        pk_dot4_rows(x, g->w0, &g->k, a);
#else
        dot4(x, g->rows, g->row_len, g->row_stride, g->w0, g->k, a);
#endif
        if (fast) {
            o[0] = a[0] <= g->args.ch[0].ch.lo_at ? (int8_t)lo : pk_out_fast(a[0], &g->q[0], out_off, lo, hi);
            o[1] = a[1] <= g->args.ch[1].ch.lo_at ? (int8_t)lo : pk_out_fast(a[1], &g->q[1], out_off, lo, hi);
            o[2] = a[2] <= g->args.ch[2].ch.lo_at ? (int8_t)lo : pk_out_fast(a[2], &g->q[2], out_off, lo, hi);
            o[3] = a[3] <= g->args.ch[3].ch.lo_at ? (int8_t)lo : pk_out_fast(a[3], &g->q[3], out_off, lo, hi);
        } else {
            o[0] = pk_out_q(a[0], &g->q[0], out_off, lo, hi);
            o[1] = pk_out_q(a[1], &g->q[1], out_off, lo, hi);
            o[2] = pk_out_q(a[2], &g->q[2], out_off, lo, hi);
            o[3] = pk_out_q(a[3], &g->q[3], out_off, lo, hi);
        }
    }
}

__attribute__((noinline)) static void span4_fast(const pk_group4* g, const int8_t* x, int32_t x_step, int8_t* o,
                                                  int32_t o_step, int32_t count) {
    span4_body(g, x, x_step, o, o_step, count, 1);
}

__attribute__((noinline)) static void span4_any(const pk_group4* g, const int8_t* x, int32_t x_step, int8_t* o,
                                                 int32_t o_step, int32_t count) {
    span4_body(g, x, x_step, o, o_step, count, 0);
}

static void span4(pk_group4* g, const int8_t* x, int32_t x_step, int8_t* o, int32_t o_step, int32_t count) {
#if defined(__ARM_ARCH_6M__)
    if (g->asm_span) {
        g->args.x_step = x_step;
        g->args.o_step = o_step;
        if (g->wide) pk_span4w(&g->args, x, o, count);
        else pk_span4(&g->args, x, o, count);
        return;
    }
#endif
    if (g->fast) span4_fast(g, x, x_step, o, o_step, count);
    else span4_any(g, x, x_step, o, o_step, count);
}

#if defined(__ARM_ARCH_6M__)
void pk_span8w(const pk_span4_args* const ab[2], const int8_t* x, int8_t* o, int32_t count);
void pk_span8x(const void* const ab[3], const int8_t* x, int8_t* o, int32_t count);
#define PK_SPAN8_MAX_ROW 32  // pk_span8w's unrolled block: kernel rows of up to 32 bytes

// Two wide groups' interior span at once (their channels side by side in the output).
static void span8(pk_group4* a, pk_group4* b, const int8_t* x, int32_t x_step, int8_t* o, int32_t o_step,
                  int32_t count) {
    a->args.x_step = x_step;
    a->args.o_step = o_step;
    if (a->w8 != (const int32_t*)0) {
        const void* const ab[3] = {&a->args, &b->args, a->w8};
        pk_span8x(ab, x, o, count);
        return;
    }
    const pk_span4_args* const ab[2] = {&a->args, &b->args};
    pk_span8w(ab, x, o, count);
}
#endif

#define PK_PATCH_MAX 192  // the largest k whose border outputs pk_conv_s8 computes by groups
#define PK_STRIP_MAX 256  // bytes of the padded copy the border outputs are computed from

// Border outputs of one group (with g2, the next group too: its channels at o + 4), n of them in a
// line from input position (iy0, ix0) on: the window they read (rows x cols input pixels, from
// (iy0, ix0), the padding filled with the input zero point, which the folded bias turns into zero)
// copied into a strip, then the same span as the interior, each output x_step bytes of the strip
// after the one before. So the border costs a copy of a few hundred bytes per line of outputs, not a
// call per output. rows * cols * c <= PK_STRIP_MAX.
// (no-tree-loop-distribute-patterns: the few-byte copies stay loops, not memcpy and memset calls)
__attribute__((noinline, optimize("no-tree-loop-distribute-patterns"))) static void border_strip(
    pk_group4* g, pk_group4* g2, const pk_conv_params* p, const int8_t* in, int32_t iy0, int32_t ix0, int32_t rows,
    int32_t cols, int32_t x_step, int8_t* o, int32_t o_step, int32_t n) {
    int8_t strip[PK_STRIP_MAX];
    const int32_t c = p->in_c, line = cols * c;
    const int8_t zp = (int8_t)(-p->input_offset);
    // The strip's columns inside the input, [lo, hi) times c bytes: the same for every row.
    const int32_t lo = (ix0 < 0 ? -ix0 : 0) * c;
    int32_t hi = (p->in_w - ix0 < cols ? p->in_w - ix0 : cols) * c;
    if (hi < lo) hi = lo;
    int8_t* d = strip;
    for (int32_t r = 0; r < rows; r++, d += line) {
        const int32_t iy = iy0 + r;
        int32_t i = 0;
        if (iy >= 0 && iy < p->in_h) {
            const int8_t* src = in + iy * p->in_w * c;
            const int32_t at = ix0 * c;  // d[i] is src[at + i], at + i >= 0 from lo on
            for (; i < lo; i++) d[i] = zp;
            for (; i < hi; i++) d[i] = src[at + i];
        }
        for (; i < line; i++) d[i] = zp;
    }
    const int32_t row_stride = g->row_stride;
    g->row_stride = g->args.row_stride = line;  // the spans read the strip's rows
#if defined(__ARM_ARCH_6M__)
    if (g2 != (pk_group4*)0) {
        span8(g, g2, strip, x_step, o, o_step, n);
        g->row_stride = g->args.row_stride = row_stride;
        return;
    }
#endif
    (void)g2;
    span4(g, strip, x_step, o, o_step, n);
    g->row_stride = g->args.row_stride = row_stride;
}

// How many outputs in a line, `step` input pixels apart, one border_strip takes when each output's
// window is `across` pixels across the line and `along` along it (at least one: the caller checks
// that one window fits).
static int32_t strip_outputs(const pk_conv_params* p, int32_t across, int32_t along, int32_t step) {
    return (PK_STRIP_MAX / (across * p->in_c) - along) / step + 1;
}

// Output columns whose patch lies inside the input: [*lo, *hi).
static void interior_columns(const pk_conv_params* p, int32_t* lo, int32_t* hi) {
    int32_t a = 0, b = p->out_w;
    while (a < p->out_w && a * p->stride_w - p->pad_w < 0) a++;
    while (b > a && (b - 1) * p->stride_w - p->pad_w + p->k_w > p->in_w) b--;
    *lo = a;
    *hi = b;
}

// Whether every output's window lies inside the input: no output then takes border_strip, whose
// strip bounds k (a pointwise conv of any depth has no border).
static int pk_no_border(const pk_conv_params* p) {
    return p->pad_h == 0 && p->pad_w == 0 && (p->out_h - 1) * p->stride_h + p->k_h <= p->in_h &&
           (p->out_w - 1) * p->stride_w + p->k_w <= p->in_w;
}

int32_t pk_conv_groups(const pk_conv_params* p) {
    return p->k_h * p->k_w * p->in_c <= PK_PATCH_MAX || pk_no_border(p) ? p->out_c / 4 : 0;
}

// One group of four output channels from oc on, ready for its spans and borders: each channel's
// folded bias, ReLU threshold and requantization (from `chan` when chan_known), and its weights: the
// group's first channel at w + oc * k (OHWI, the other three k apart), or the host's expanded copy
// at p->wx + oc * k (the wide path). This is where a conv gets its weights per group of channels.
// With p->groups (a host record found equal at Prepare) only the geometry is set here: the record
// holds the rest, and the group takes the assembly spans (q[] stays unset: only the C paths read it,
// and a group with asm_span never takes them).
static void group_setup(pk_group4* gp, const pk_conv_params* p, const int8_t* w, const int32_t* bias, int32_t oc,
                        pk_chan_setup* chan, int chan_known) {
    const int32_t c = p->in_c;
    const int32_t k = p->k_h * p->k_w * c;
    gp->w0 = w + oc * k;
    gp->k = k;
    gp->rows = p->k_h;
    gp->row_len = p->k_w * c;
    gp->row_stride = p->in_w * c;
    gp->out_off = p->output_offset;
    gp->lo = p->act_min;
    gp->hi = p->act_max;
    gp->w8 = (const int32_t*)0;
    gp->args.k = k;
    gp->args.rows = gp->rows;
    gp->args.row_len = gp->row_len;
    gp->args.row_stride = gp->row_stride;
#if defined(__ARM_ARCH_6M__)
    if (p->groups != (const int32_t*)0) {
        gp->args.ch = (const pk_span_fch*)(const void*)(p->groups + (oc / 4) * PK_GROUP_RECORD);
        gp->args.be[0] = gp->args.ch[0].be;
        gp->args.be[1] = gp->args.ch[1].be;
        gp->args.be[2] = gp->args.ch[2].be;
        gp->args.be[3] = gp->args.ch[3].be;
        gp->fast = 1;
        gp->asm_span = 1;
        gp->wide = p->wx != (const int32_t*)0;
        gp->args.w0 = gp->wide ? (const int8_t*)(const void*)(p->wx + oc * k) : gp->w0;
        return;
    }
#endif
    gp->args.ch = gp->chs;
    uint32_t abs_sum[4];
    for (int32_t j = 0; j < 4; j++) {
        gp->q[j] = pk_quant_of(p->mult[oc + j], p->shift[oc + j]);
        pk_chan_setup* cj = chan != (pk_chan_setup*)0 ? chan + (oc + j) : (pk_chan_setup*)0;
        if (cj != (pk_chan_setup*)0 && chan_known) {
            gp->args.be[j] = cj->bias;
            abs_sum[j] = cj->abs_sum;
            gp->chs[j].ch.lo_at = cj->lo_at;
            continue;
        }
        int32_t sum = 0;
        uint32_t asum = 0;
        if (w != (const int8_t*)0) {
            const int8_t* wj = gp->w0 + j * k;
            for (int32_t i = 0; i < k; i++) {
                const int32_t v = wj[i];
                sum += v;
                asum += (uint32_t)(v < 0 ? -v : v);
            }
        } else {  // the host's expanded weights: weight i of channel j at [i * 4 + j]
            const int32_t* xj = p->wx + oc * k + j;
            for (int32_t i = 0; i < k; i++) {
                const int32_t v = xj[4 * i];
                sum += v;
                asum += (uint32_t)(v < 0 ? -v : v);
            }
        }
        abs_sum[j] = asum;
        gp->args.be[j] = (bias ? bias[oc + j] : 0) + p->input_offset * sum;
        gp->chs[j].ch.lo_at =
            p->lo_at != (const int32_t*)0 ? p->lo_at[oc + j] : pk_lo_threshold(&gp->q[j], gp->out_off, gp->lo, gp->hi);
        if (cj != (pk_chan_setup*)0) {
            cj->bias = gp->args.be[j];
            cj->abs_sum = asum;
            cj->lo_at = gp->chs[j].ch.lo_at;
        }
    }
    gp->fast = 1;
    gp->asm_span = 1;
    for (int32_t j = 0; j < 4; j++) {
        gp->fast &= pk_fits_sum(gp->args.be[j], abs_sum[j], &gp->q[j]);
        gp->asm_span &= gp->q[j].left == 0 && gp->q[j].right > 0 && gp->chs[j].ch.lo_at != INT32_MIN;
        pk_span_ch* ch = &gp->chs[j].ch;  // field by field: a struct copy may become a memcpy call
        ch->mh = gp->q[j].mh;
        ch->ml = (int32_t)gp->q[j].ml;
        ch->right = gp->q[j].right;
        ch->half = gp->q[j].right > 0 ? (int32_t)(1u << (gp->q[j].right - 1)) : 0;
        ch->out_off = gp->out_off;
        ch->lo = gp->lo;
        ch->hi = gp->hi;
        pk_fit_of(&gp->chs[j], &gp->q[j], gp->out_off);
        gp->chs[j].be = gp->args.be[j];
        gp->chs[j].lo_rel = gp->chs[j].ch.lo_at - gp->args.be[j];
    }
    gp->asm_span &= gp->fast;
    gp->args.w0 = gp->w0;
    gp->wide = 0;
#if defined(__ARM_ARCH_6M__)
    if (gp->asm_span && p->wx != (const int32_t*)0) {
        gp->args.w0 = (const int8_t*)(const void*)(p->wx + oc * k);  // group oc / 4: 4 * k words in
        gp->wide = 1;
    }
#endif
}

int pk_group_record(const pk_conv_params* p, const int8_t* w, const int32_t* bias, int32_t oc, int32_t* rec) {
    pk_conv_params q = *p;
    q.groups = (const int32_t*)0;  // computed, never read back
    pk_group4 g;
    group_setup(&g, &q, w, bias, oc, (pk_chan_setup*)0, 0);
    const int32_t* f = (const int32_t*)(const void*)g.chs;
    for (int32_t i = 0; i < PK_GROUP_RECORD; i++) rec[i] = f[i];
    return g.asm_span;
}

int pk_group_table_equal(const pk_conv_params* p, const int8_t* w, const int32_t* bias, const int32_t* table) {
    const int32_t groups = pk_conv_groups(p);
    if (table == (const int32_t*)0 || groups == 0 || groups * 4 != p->out_c) return 0;
    for (int32_t g = 0; g < groups; g++) {
        int32_t rec[PK_GROUP_RECORD];
        if (!pk_group_record(p, w, bias, 4 * g, rec)) return 0;
        for (int32_t i = 0; i < PK_GROUP_RECORD; i++)
            if (rec[i] != table[g * PK_GROUP_RECORD + i]) return 0;
    }
    return 1;
}

PK_HOT void pk_conv_s8(const pk_conv_params* p, const int8_t* in, const int8_t* w, const int32_t* bias, int8_t* out) {
    pk_conv_s8_ex(p, in, w, bias, out, (const pk_conv_opts*)0);
}

PK_HOT void pk_conv_s8_ex(const pk_conv_params* p, const int8_t* in, const int8_t* w, const int32_t* bias,
                          int8_t* out, const pk_conv_opts* o) {
    pk_chan_setup* const chan = o != (const pk_conv_opts*)0 ? o->chan : (pk_chan_setup*)0;
    const int chan_known = o != (const pk_conv_opts*)0 && o->chan_known;
    const int32_t c = p->in_c, oc_n = p->out_c;
    int32_t ox_lo, ox_hi;
    interior_columns(p, &ox_lo, &ox_hi);
    const int32_t groups = pk_conv_groups(p);
    int32_t g_lo = 0, g_hi = groups;
    if (o != (const pk_conv_opts*)0 && o->group_hi >= 0) {
        g_lo = o->group_lo < groups ? o->group_lo : groups;
        g_hi = o->group_hi < groups ? o->group_hi : groups;
    }
    for (int32_t gi = g_lo; gi < g_hi;) {
        pk_group4 g;
        group_setup(&g, p, w, bias, 4 * gi, chan, chan_known);
        int pair = 0;
        pk_group4* g2p = (pk_group4*)0;  // the second group of a pair
#if defined(__ARM_ARCH_6M__)
        // Two wide groups side by side: pk_span8w loads each input byte once for eight channels.
        pk_group4 g2;
        if (gi + 1 < g_hi && g.wide && g.row_len <= PK_SPAN8_MAX_ROW) {
            group_setup(&g2, p, w, bias, 4 * (gi + 1), chan, chan_known);
            pair = g2.wide;
            if (pair) g2p = &g2;
            if (pair && p->wx8 != (const int32_t*)0 && gi % 2 == 0)  // an aligned pair: one stream
                g.w8 = p->wx8 + (gi / 2) * 8 * g.k;
        }
#endif
        const int32_t oc = 4 * gi;
        // Output rows [oy_in, oy_out) read no padded row: the rows before and after are border rows,
        // each from strips along x; the border columns of the rows between from strips along y.
        int32_t oy_in = 0, oy_out = p->out_h;
        while (oy_in < p->out_h && oy_in * p->stride_h - p->pad_h < 0) oy_in++;
        while (oy_out > oy_in && (oy_out - 1) * p->stride_h - p->pad_h + p->k_h > p->in_h) oy_out--;
        // Full-width interior rows whose inputs follow on from one row to the next (a pointwise conv at
        // stride 1): one span for all of them.
        const int merged = ox_lo == 0 && ox_hi == p->out_w && p->stride_h * p->in_w == p->out_w * p->stride_w;
        if (merged && oy_out > oy_in) {
            const int8_t* x = in + (oy_in * p->stride_h - p->pad_h) * p->in_w * c;
            int8_t* o0 = out + oy_in * p->out_w * oc_n + oc;
            const int32_t count = (oy_out - oy_in) * p->out_w;
#if defined(__ARM_ARCH_6M__)
            if (pair) span8(&g, &g2, x, p->stride_w * c, o0, oc_n, count);
            else span4(&g, x, p->stride_w * c, o0, oc_n, count);
#else
            span4(&g, x, p->stride_w * c, o0, oc_n, count);
#endif
        }
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            int8_t* orow = out + oy * p->out_w * oc_n + oc;
            if (merged && oy >= oy_in && oy < oy_out) continue;
            if (oy < oy_in || oy >= oy_out) {
                const int32_t n_max = strip_outputs(p, p->k_h, p->k_w, p->stride_w);
                for (int32_t ox = 0; ox < p->out_w;) {
                    const int32_t n = p->out_w - ox < n_max ? p->out_w - ox : n_max;
                    border_strip(&g, g2p, p, in, iy0, ox * p->stride_w - p->pad_w, p->k_h, (n - 1) * p->stride_w + p->k_w,
                                 p->stride_w * c, orow + ox * oc_n, oc_n, n);
                    ox += n;
                }
                continue;
            }
            if (ox_hi <= ox_lo) continue;
            const int8_t* x = in + (iy0 * p->in_w + ox_lo * p->stride_w - p->pad_w) * c;
#if defined(__ARM_ARCH_6M__)
            if (pair) {
                span8(&g, &g2, x, p->stride_w * c, orow + ox_lo * oc_n, oc_n, ox_hi - ox_lo);
                continue;
            }
#endif
            span4(&g, x, p->stride_w * c, orow + ox_lo * oc_n, oc_n, ox_hi - ox_lo);
        }
        // The border columns of rows [oy_in, oy_out), each a line of outputs down the column.
        const int32_t n_max = strip_outputs(p, p->k_w, p->k_h, p->stride_h);
        for (int32_t ox = 0; ox < p->out_w; ox++) {
            if (ox == ox_lo && ox_hi > ox_lo) ox = ox_hi;
            if (ox >= p->out_w) break;
            for (int32_t oy = oy_in; oy < oy_out;) {
                const int32_t n = oy_out - oy < n_max ? oy_out - oy : n_max;
                border_strip(&g, g2p, p, in, oy * p->stride_h - p->pad_h, ox * p->stride_w - p->pad_w,
                             (n - 1) * p->stride_h + p->k_h, p->k_w, p->stride_h * p->k_w * c,
                             out + (oy * p->out_w + ox) * oc_n + oc, p->out_w * oc_n, n);
                oy += n;
            }
        }
        gi += pair ? 2 : 1;
    }
    if (o != (const pk_conv_opts*)0 && !o->leftovers) return;
    int32_t oc = 4 * groups;
    for (; oc + 2 <= oc_n; oc += 2) conv_group(p, in, w, bias, out, oc, 2);
    for (; oc < oc_n; oc++) conv_group(p, in, w, bias, out, oc, 1);
}

// Nine taps of a 3x3 depthwise kernel at x (top-left tap of one channel): rows row_stride apart,
// columns c_n apart; w holds the channel's nine weights as int32.
static inline int32_t dw3x3(const int8_t* x, int32_t c_n, int32_t row_stride, const int32_t* w, int32_t acc) {
#if defined(__ARM_ARCH_6M__)
    int32_t zero = 0, c2 = 2 * c_n, xv, t;
    __asm__ volatile(
        "ldrsb %[xv], [%[x], %[zero]]\n\t"
        "ldr %[t], [%[w], #0]\n\t"
        "mul %[t], %[xv]\n\t"
        "add %[acc], %[t]\n\t"
        "ldrsb %[xv], [%[x], %[c1]]\n\t"
        "ldr %[t], [%[w], #4]\n\t"
        "mul %[t], %[xv]\n\t"
        "add %[acc], %[t]\n\t"
        "ldrsb %[xv], [%[x], %[c2]]\n\t"
        "ldr %[t], [%[w], #8]\n\t"
        "mul %[t], %[xv]\n\t"
        "add %[acc], %[t]\n\t"
        "add %[x], %[rs]\n\t"
        "ldrsb %[xv], [%[x], %[zero]]\n\t"
        "ldr %[t], [%[w], #12]\n\t"
        "mul %[t], %[xv]\n\t"
        "add %[acc], %[t]\n\t"
        "ldrsb %[xv], [%[x], %[c1]]\n\t"
        "ldr %[t], [%[w], #16]\n\t"
        "mul %[t], %[xv]\n\t"
        "add %[acc], %[t]\n\t"
        "ldrsb %[xv], [%[x], %[c2]]\n\t"
        "ldr %[t], [%[w], #20]\n\t"
        "mul %[t], %[xv]\n\t"
        "add %[acc], %[t]\n\t"
        "add %[x], %[rs]\n\t"
        "ldrsb %[xv], [%[x], %[zero]]\n\t"
        "ldr %[t], [%[w], #24]\n\t"
        "mul %[t], %[xv]\n\t"
        "add %[acc], %[t]\n\t"
        "ldrsb %[xv], [%[x], %[c1]]\n\t"
        "ldr %[t], [%[w], #28]\n\t"
        "mul %[t], %[xv]\n\t"
        "add %[acc], %[t]\n\t"
        "ldrsb %[xv], [%[x], %[c2]]\n\t"
        "ldr %[t], [%[w], #32]\n\t"
        "mul %[t], %[xv]\n\t"
        "add %[acc], %[t]\n\t"
        : [acc] "+h"(acc), [x] "+l"(x), [xv] "=&l"(xv), [t] "=&l"(t)
        : [zero] "l"(zero), [c1] "l"(c_n), [c2] "l"(c2), [rs] "h"(row_stride), [w] "l"(w)
        : "cc", "memory");
    return acc;
#else
    for (int32_t ky = 0; ky < 3; ky++, x += row_stride)
        for (int32_t kx = 0; kx < 3; kx++) acc += x[kx * c_n] * w[ky * 3 + kx];
    return acc;
#endif
}

// One channel of a depthwise convolution, gathered for the span loop.
typedef struct {
    int32_t w9[9];  // a 3x3 kernel's weights as int32 (dw3x3 reads them with immediate offsets)
    int32_t be, lo_at, c_n, row_stride;
    pk_quant q;
    int32_t out_off, lo, hi;
    int fast;
    int asm_span;  // fast, no left shift: pk_span_dw3 (M0+ assembly) takes the spans
    pk_dw3_args args;
} pk_dwchan;

__attribute__((noinline)) static void span_dw3(pk_dwchan* d, const int8_t* x, int32_t x_step, int8_t* o,
                                                int32_t o_step, int32_t count) {
#if defined(__ARM_ARCH_6M__)
    if (d->asm_span) {
        d->args.x_step = x_step;
        d->args.o_step = o_step;
        pk_span_dw3(&d->args, x, o, count);
        return;
    }
#endif
    const int32_t lo = d->lo, lo_at = d->lo_at;
    for (; count > 0; count--, x += x_step, o += o_step) {
        const int32_t acc = dw3x3(x, d->c_n, d->row_stride, d->w9, d->be);
        if (acc <= lo_at) *o = (int8_t)lo;
        else *o = d->fast ? pk_out_fast(acc, &d->q, d->out_off, lo, d->hi) : pk_out_q(acc, &d->q, d->out_off, lo, d->hi);
    }
}

#if defined(__ARM_ARCH_6M__)
// Every output of one channel when none of them reads padding (pk_no_border), the stride across 1 or
// 2 and the width odd (dw3_plane_channel takes the even ones): each row's pairs of outputs in
// pk_dw3_pairs_s1 / _s2, its last output in span_dw3. x and o point at the channel's first input and
// output.
__attribute__((noinline)) static void dw3_plane(const pk_conv_params* p, pk_dwchan* d, const int8_t* x, int8_t* o) {
    const int32_t c_n = p->in_c, sw = p->stride_w, row_stride = p->in_w * c_n;
    const int32_t x_row = p->stride_h * row_stride, o_row = p->out_w * c_n, last = p->out_w - 1;
    pk_dw3p_args a;
    a.ch = d->args.ch;
    for (int32_t t = 0; t < 9; t++) a.w[t] = d->w9[t];
    a.be = d->be;
    a.c_n = c_n;
    a.row_adv = row_stride - sw * c_n;
    a.x_row_skip = 0;  // one row a call
    a.o_row_step = 0;
    a.pairs = p->out_w / 2;
    a.rows = 1;
    for (int32_t oy = 0; oy < p->out_h; oy++, x += x_row, o += o_row) {
        if (sw == 2) pk_dw3_pairs_s2(&a, x, o);
        else pk_dw3_pairs_s1(&a, x, o);
        if (p->out_w & 1) span_dw3(d, x + last * sw * c_n, sw * c_n, o + last * c_n, c_n, 1);
    }
}

// dw3_plane's per-op half of the arguments, set once for all channels of an even width.
static void dw3_plane_init(const pk_conv_params* p, pk_dw3p_args* a) {
    const int32_t c_n = p->in_c, row_stride = p->in_w * c_n;
    a->ch.out_off = p->output_offset;
    a->ch.lo = p->act_min;
    a->ch.hi = p->act_max;
    a->c_n = c_n;
    a->row_adv = row_stride - p->stride_w * c_n;
    a->pairs = p->out_w / 2;
    a->x_row_skip = p->stride_h * row_stride - a->pairs * 2 * p->stride_w * c_n;
    a->o_row_step = p->out_w * c_n;
    a->rows = p->out_h;
}

// Channel c of an even width in pk_dw3_pairs_s1 / _s2 with only the per-channel half of the setup
// (weights, folded bias, requantization); 0 when the channel needs what the assembly lacks (a left
// shift, an accumulator beyond pk_out_fast's range, no ReLU threshold): then nothing is written.
__attribute__((noinline)) static int dw3_plane_channel(const pk_conv_params* p, pk_dw3p_args* a, const int8_t* w,
                                                       const int32_t* bias, int32_t c, const int8_t* x, int8_t* o) {
    const int32_t c_n = p->in_c, mult = p->mult[c], shift = p->shift[c];
    const int32_t left = shift > 0 ? shift : 0, right = shift > 0 ? 0 : -shift;
    if (mult < 0 || left > 15 || right > 16) return 0;
    int32_t wsum = 0;
    uint32_t abs_sum = 0;
    const int8_t* wc = w + c;
    for (int32_t t = 0; t < 9; t++, wc += c_n) {
        const int32_t v = *wc;
        a->w[t] = v;
        wsum += v;
        abs_sum += (uint32_t)(v < 0 ? -v : v);
    }
    const int32_t be = (bias ? bias[c] : 0) + p->input_offset * wsum;
    const int32_t lo_at = p->lo_at != (const int32_t*)0
                              ? p->lo_at[c] : pk_lo_threshold_of(mult, shift, p->output_offset, p->act_min, p->act_max);
    if (lo_at == INT32_MIN) return 0;
    a->be = be;
    a->ch.lo_at = lo_at;
    // Above lo_at the accumulator v is at least lo_at + 1 and at most be + 128 * sum|w|. DWREQ16 takes
    // v * (mult << left) as v * mh * 2^16 + v * ml: exact when every partial sum stays below 2^32.
    // In 32 bits (no 64-bit library calls per channel): |be| < 2^23 keeps v_max below 2^31 (abs_sum
    // <= 9 * 128), and mh < 2^16 keeps v_max * mh below 2^32 once v_max < 2^16.
    const int32_t v_max = be + 128 * (int32_t)abs_sum;
    const uint32_t mh = (uint32_t)mult >> (16 - left), ml = ((uint32_t)mult << left) & 0xFFFFu;
    const uint32_t k = (1u << 14) + (right > 0 ? 1u << (right + 14) : 0u);
    if (lo_at >= -1 && be > -(1 << 23) && be < (1 << 23) && v_max < 65536 && mh < 65536 &&
        (uint32_t)(v_max > 0 ? v_max : 0) * mh <= 0xFFFFFFFFu - 0xFFFFu - k) {
        a->ch.mh = (int32_t)mh;
        a->ch.ml = (int32_t)ml;
        a->ch.right = right + 15;
        a->ch.half = (int32_t)k;
        if (p->stride_w == 2) pk_dw3_pairs16_s2(a, x, o);
        else pk_dw3_pairs16_s1(a, x, o);
        return 1;
    }
    // DWREQ: no left shift, |accumulator| < 2^23 (pk_out_fast's range).
    if (left > 0 || right == 0 || (uint32_t)(be < 0 ? -be : be) + 128u * abs_sum >= (1u << 23)) return 0;
    a->ch.mh = mult >> 16;
    a->ch.ml = (int32_t)((uint32_t)mult & 0xFFFFu);
    a->ch.right = right;
    a->ch.half = (int32_t)(1u << (right - 1));
    if (p->stride_w == 2) pk_dw3_pairs_s2(a, x, o);
    else pk_dw3_pairs_s1(a, x, o);
    return 1;
}
#endif

// One output of channel c at (iy0, ix0) at the border. A 3x3 kernel gets its nine taps copied with the
// padding filled with the input zero point (the folded bias turns it into zero) and the same dw3x3;
// other kernels skip the taps outside the input.
__attribute__((noinline)) static int8_t dw_any(const pk_conv_params* p, const pk_dwchan* d, const int8_t* in,
                                                const int8_t* wc, int32_t bias, int32_t c, int32_t iy0, int32_t ix0) {
    const int32_t c_n = p->in_c;
    if (p->k_h == 3 && p->k_w == 3) {
        int8_t patch[9];
        const int8_t zp = (int8_t)(-p->input_offset);
        for (int32_t ky = 0; ky < 3; ky++) {
            const int32_t iy = iy0 + ky;
            for (int32_t kx = 0; kx < 3; kx++) {
                const int32_t ix = ix0 + kx;
                patch[ky * 3 + kx] = (iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w)
                                         ? zp : in[(iy * p->in_w + ix) * c_n + c];
            }
        }
        return pk_out_q(dw3x3(patch, 1, 3, d->w9, d->be), &d->q, d->out_off, d->lo, d->hi);
    }
    const int32_t acc = bias + taps_inside(p, in + c, wc, c_n, 1, iy0, ix0);
    return pk_out_q(acc, &d->q, d->out_off, d->lo, d->hi);
}

void pk_dwconv_s8(const pk_conv_params* p, const int8_t* in, const int8_t* w, const int32_t* bias, int8_t* out) {
    pk_dwconv_s8_channels(p, in, w, bias, out, 0, p->in_c);
}

PK_HOT void pk_dwconv_s8_channels(const pk_conv_params* p, const int8_t* in, const int8_t* w, const int32_t* bias,
                                  int8_t* out, int32_t c_lo, int32_t c_hi) {
    const int32_t c_n = p->in_c;
    const int32_t taps = p->k_h * p->k_w;
    const int k33 = p->k_h == 3 && p->k_w == 3;
    int32_t ox_lo, ox_hi;
    interior_columns(p, &ox_lo, &ox_hi);
    if (c_lo < 0) c_lo = 0;
    if (c_hi > c_n) c_hi = c_n;
    // Every output interior, at a stride the pair kernels take: one call a channel for all its rows.
    const int plane = k33 && pk_no_border(p) && (p->stride_w == 1 || p->stride_w == 2) && p->out_w >= 2;
    (void)plane;
#if defined(__ARM_ARCH_6M__)
    pk_dw3p_args a;
    const int even_plane = plane && (p->out_w & 1) == 0;
    if (even_plane) dw3_plane_init(p, &a);
#endif
    for (int32_t c = c_lo; c < c_hi; c++) {
#if defined(__ARM_ARCH_6M__)
        if (even_plane && dw3_plane_channel(p, &a, w, bias, c, in + c, out + c)) continue;
#endif
        const int8_t* wc = w + c;
        pk_dwchan d;
        int32_t wsum = 0;
        for (int32_t t = 0; t < taps; t++) wsum += wc[t * c_n];
        if (k33)
            for (int32_t t = 0; t < 9; t++) d.w9[t] = wc[t * c_n];
        const int32_t b = bias ? bias[c] : 0;
        d.be = b + p->input_offset * wsum;
        d.q = pk_quant_of(p->mult[c], p->shift[c]);
        d.out_off = p->output_offset;
        d.lo = p->act_min;
        d.hi = p->act_max;
        d.fast = pk_fits(d.be, wc, taps, c_n, &d.q);
        d.lo_at = p->lo_at != (const int32_t*)0 ? p->lo_at[c] : pk_lo_threshold(&d.q, d.out_off, d.lo, d.hi);
        d.c_n = c_n;
        d.row_stride = p->in_w * c_n;
        d.asm_span = k33 && d.fast && d.q.left == 0 && d.q.right > 0 && d.lo_at != INT32_MIN;
        if (d.asm_span) {
            for (int32_t t = 0; t < 9; t++) d.args.w[t] = d.w9[t];
            d.args.be = d.be;
            d.args.c_n = c_n;
            d.args.row_stride = d.row_stride;
            const pk_span_ch ch = {d.lo_at, d.q.mh, (int32_t)d.q.ml, d.q.right, (int32_t)(1u << (d.q.right - 1)),
                                   d.out_off, d.lo, d.hi};
            d.args.ch = ch;
        }
#if defined(__ARM_ARCH_6M__)
        if (d.asm_span && plane) {
            dw3_plane(p, &d, in + c, out + c);
            continue;
        }
#endif
        for (int32_t oy = 0; oy < p->out_h; oy++) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            int8_t* orow = out + oy * p->out_w * c_n + c;
            const int rows_in = iy0 >= 0 && iy0 + p->k_h <= p->in_h;
            int32_t ox = 0;
            if (rows_in && k33 && ox_hi > ox_lo) {
                for (; ox < ox_lo; ox++) orow[ox * c_n] = dw_any(p, &d, in, wc, b, c, iy0, ox * p->stride_w - p->pad_w);
                span_dw3(&d, in + (iy0 * p->in_w + ox_lo * p->stride_w - p->pad_w) * c_n + c, p->stride_w * c_n,
                         orow + ox_lo * c_n, c_n, ox_hi - ox_lo);
                ox = ox_hi;
            }
            for (; ox < p->out_w; ox++) orow[ox * c_n] = dw_any(p, &d, in, wc, b, c, iy0, ox * p->stride_w - p->pad_w);
        }
    }
}

int pk_split(const pk_conv_params* p, int depthwise, int32_t min_macs, pk_part parts[2]) {
    const int32_t per_output = p->k_h * p->k_w * (depthwise ? 1 : p->in_c);
    const int64_t macs = (int64_t)p->out_h * p->out_w * p->out_c * per_output;
    parts[0].oy_lo = 0;
    parts[0].oy_hi = p->out_h;
    parts[1] = parts[0];
    // Each part repeats the per-channel setup (folded bias, requantization constants, the ReLU
    // threshold: several hundred cycles a channel): worth it only with enough MACs per channel.
    if (macs < min_macs || macs < 256 * (int64_t)p->out_c || p->out_h < 2) return 1;
    parts[0].oy_hi = parts[1].oy_lo = p->out_h / 2;
    return 2;
}

// Output row oy reads input rows from iy0 = oy * stride_h - pad_h on. A part starting at oy_lo reads
// nothing above base = oy_lo * stride_h - pad_h: when base >= 0 the view starts base rows down with
// no top padding, else at row 0 with the padding that is left (-base). Either way the view's iy0 of
// every row is the whole's minus the rows it skipped, and in_h shrinks by as many, so every bound the
// kernels test (iy0 >= 0, iy0 + k_h <= in_h, iy inside the input) comes out as in the whole.
void pk_part_view(const pk_conv_params* p, const pk_part* part, pk_conv_params* view, int32_t* in_offset,
                  int32_t* out_offset) {
    const int32_t base = part->oy_lo * p->stride_h - p->pad_h;
    const int32_t skip = base > 0 ? base : 0;
    *view = *p;
    view->out_h = part->oy_hi - part->oy_lo;
    view->pad_h = base > 0 ? 0 : -base;
    view->in_h = p->in_h - skip;
    *in_offset = skip * p->in_w * p->in_c;
    *out_offset = part->oy_lo * p->out_w * p->out_c;
}

int32_t pk_inplace_band_end(const pk_conv_params* p, int32_t oy_lo, int64_t lead) {
    const int64_t out_row = (int64_t)p->out_w * p->out_c, in_row = (int64_t)p->in_w * p->in_c;
    const int32_t first = oy_lo * p->stride_h - p->pad_h;
    const int64_t room = lead + (first > 0 ? first : 0) * in_row;  // output bytes before live input
    if (out_row <= 0 || room < 0) return oy_lo;
    const int64_t end = room / out_row;
    return end < p->out_h ? (int32_t)end : p->out_h;
}

// memset with whole words when both ends allow it (newlib's byte-wise version in the no-ROM image
// costs about 6 cycles a byte).
static void pk_fill(int8_t* d, int8_t v, int32_t n) {
    if ((((uintptr_t)d | (uint32_t)n) & 3u) == 0) {
        const uint32_t word = 0x01010101u * (uint8_t)v;
        uint32_t* dw = (uint32_t*)(void*)d;
        for (int32_t i = 0; i < n / 4; i++) dw[i] = word;
        return;
    }
    for (int32_t i = 0; i < n; i++) d[i] = v;
}

#if defined(__ARM_ARCH_6M__)
void pk_copy_up16(int8_t* d, const int8_t* s, int32_t n);  // pk_dot_m0.S: the last 16 bytes first
#endif

// memmove for d >= s: copies the last byte first (words when both ends allow, on the M0+ the whole
// 16-byte blocks below the words beyond them in pk_copy_up16).
static void pk_move_up(int8_t* d, const int8_t* s, int32_t n) {
    if (d == s || n <= 0) return;
    if ((((uintptr_t)d | (uintptr_t)s | (uint32_t)n) & 3u) == 0) {  // d - s is then 0 mod 4
        int32_t* dw = (int32_t*)(void*)d;
        const int32_t* sw = (const int32_t*)(const void*)s;
        int32_t i = n / 4 - 1;
#if defined(__ARM_ARCH_6M__)
        const int32_t blocks = n & ~15;
        for (; i >= blocks / 4; i--) dw[i] = sw[i];
        if (blocks > 0) pk_copy_up16(d, s, blocks);
        return;
#endif
        for (; i >= 0; i--) dw[i] = sw[i];
        return;
    }
    for (int32_t i = n - 1; i >= 0; i--) d[i] = s[i];
}

void pk_pad_s8(const int8_t* in, int32_t h, int32_t w, int32_t c, int8_t* out, int32_t ph, int32_t pw,
               int32_t top, int32_t left, int8_t zero_point) {
    // Last row first, each row's bytes last first: every destination byte is at or above its source
    // (ph >= h + top, pw >= w + left), so `out` may start at `in` itself (an in-place plan) and no
    // byte is overwritten before it is copied.
    const int32_t row = w * c, prow = pw * c;
    for (int32_t y = ph - 1; y >= 0; y--) {
        int8_t* d = out + y * prow;
        const int32_t iy = y - top;
        if (iy < 0 || iy >= h) {
            pk_fill(d, zero_point, prow);
            continue;
        }
        const int32_t lead = left * c;
        const int32_t n = prow - lead < row ? prow - lead : row;
        pk_fill(d + lead + n, zero_point, prow - lead - n);
        pk_move_up(d + lead, in + iy * row, n);
        pk_fill(d, zero_point, lead);
    }
}

// Two sign-extended weights per packed int4 byte (low nibble first, as TFLite packs them), as the
// int16 that stores both bytes at once: 512 bytes of flash instead of shifts per weight.
#define PK_LO(b) ((uint16_t)(uint8_t)(((b) & 0x08) ? ((b) & 0x0F) - 16 : ((b) & 0x0F)))
#define PK_HI(b) ((uint16_t)(uint8_t)(((b) & 0x80) ? (((b) >> 4) & 0x0F) - 16 : (((b) >> 4) & 0x0F)))
#define PK_PAIR(b) (uint16_t)(PK_LO(b) | (PK_HI(b) << 8))
#define PK_R4(b) PK_PAIR(b), PK_PAIR((b) + 1), PK_PAIR((b) + 2), PK_PAIR((b) + 3)
#define PK_R16(b) PK_R4(b), PK_R4((b) + 4), PK_R4((b) + 8), PK_R4((b) + 12)
#define PK_R64(b) PK_R16(b), PK_R16((b) + 16), PK_R16((b) + 32), PK_R16((b) + 48)
static const uint16_t pk_s4_pairs[256] = {PK_R64(0), PK_R64(64), PK_R64(128), PK_R64(192)};

void pk_unpack_s4(const int8_t* packed, int32_t count, int8_t* out) {
    const uint8_t* src = (const uint8_t*)packed;
    const int32_t pairs = count / 2;
    if (((uintptr_t)out & 1u) == 0) {
        uint16_t* d = (uint16_t*)(void*)out;
        for (int32_t i = 0; i < pairs; i++) d[i] = pk_s4_pairs[src[i]];
    } else {
        for (int32_t i = 0; i < pairs; i++) {
            const uint16_t v = pk_s4_pairs[src[i]];
            out[2 * i] = (int8_t)(v & 0xFF);
            out[2 * i + 1] = (int8_t)(v >> 8);
        }
    }
    if (count & 1) out[count - 1] = (int8_t)(pk_s4_pairs[src[pairs]] & 0xFF);
}

PK_HOT void pk_sum_hw_s8_range(const int8_t* in, int32_t hw, int32_t c_count, int32_t c_lo, int32_t c_hi,
                               int32_t* sums) {
    for (int32_t c = c_lo; c < c_hi; c++) {
        const int8_t* x = in + c;
        int32_t s = 0, i = 0;
        for (; i + 4 <= hw; i += 4, x += 4 * c_count) s += x[0] + x[c_count] + x[2 * c_count] + x[3 * c_count];
        for (; i < hw; i++, x += c_count) s += *x;
        sums[c] = s;
    }
}

void pk_sum_hw_s8(const int8_t* in, int32_t hw, int32_t c_count, int32_t* sums) {
    pk_sum_hw_s8_range(in, hw, c_count, 0, c_count, sums);
}
