// The arithmetic of picotflm's kernels, in plain C with no TFLM dependency, so the host can compile
// exactly this file and test it against TFLM's outputs (tests/firmware/test_kernels_c.py).
//
// Layouts are TFLite's: activations NHWC (one batch per call), conv weights OHWI, depthwise weights
// 1HWC (depth multiplier 1). Requantization is CMSIS-NN's arm_nn_requantize, bit for bit.
#ifndef PICOTFLM_PK_CORE_H_
#define PICOTFLM_PK_CORE_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int32_t in_h, in_w, in_c;
    int32_t out_h, out_w, out_c;
    int32_t k_h, k_w;
    int32_t stride_h, stride_w;
    int32_t pad_h, pad_w;      // padding before (top / left); after is implied by the output size
    int32_t input_offset;      // -(input zero point)
    int32_t output_offset;     // output zero point
    int32_t act_min, act_max;  // clamp of the fused activation, in output units
    const int32_t* mult;       // per output channel: Q31 multiplier (>= 0)
    const int32_t* shift;      // per output channel: exponent (> 0 shifts left)
    const int32_t* lo_at;      // per output channel: pk_lo_threshold, computed by the host (NULL: computed here)
    // pk_conv_s8 only: the weights of every group of four output channels expanded to int32 and
    // interleaved by channel (group g at wx + 16 * g * k_h * k_w * in_c, wx[i * 4 + c] = weight i of
    // its channel c), as pk_span4w reads them: written by the host, in flash (NULL: the narrow path).
    const int32_t* wx;
    // pk_conv_s8 only, with wx: the same weights for each pair of groups (channels 8p .. 8p + 7) as
    // one stream, wx8[(p * k + i) * 8 + c] = weight i of channel 8p + c, as pk_span8x reads them
    // (NULL: pairs read wx's two streams).
    const int32_t* wx8;
    // pk_conv_s8 only: each group of four output channels' setup as pk_group_record writes it
    // (PK_GROUP_RECORD words a group), written by the host and found equal to the firmware's own at
    // Prepare (NULL: computed at every call).
    const int32_t* groups;
} pk_conv_params;

// Output rows [oy_lo, oy_hi) of one convolution: a part that one core of the RP2040 computes while
// the other computes the rest (conv_run.cpp).
typedef struct {
    int32_t oy_lo, oy_hi;
} pk_part;

// Splits a convolution (depthwise != 0: a depthwise one) into two parts, its output rows in halves,
// and returns 2; or returns 1, parts[0] the whole, when it has fewer than min_macs multiply-
// accumulates, fewer than 256 per output channel (each part repeats the per-channel setup) or a
// single output row.
int pk_split(const pk_conv_params* p, int depthwise, int32_t min_macs, pk_part parts[2]);

// A part as a convolution of its own: the same kernel run with *view on (in + *in_offset) writes
// exactly the part's outputs at (out + *out_offset), with exactly the whole's arithmetic (the same
// taps, the same padding, the same border and interior cases), so two parts computed separately, in
// any order or at once, equal the whole bit for bit.
void pk_part_view(const pk_conv_params* p, const pk_part* part, pk_conv_params* view, int32_t* in_offset,
                  int32_t* out_offset);

// In place: the output starts `lead` bytes below the input (the two overlap). Output rows from oy_lo
// on read input rows from max(0, oy_lo * stride_h - pad_h) on, so rows [oy_lo, end) may be written
// as one band when they end at or before that input row. Returns the largest such end (at most
// out_h); an end <= oy_lo means not even one row can be written without destroying live input.
int32_t pk_inplace_band_end(const pk_conv_params* p, int32_t oy_lo, int64_t lead);

// The largest accumulator a channel requantizes to `lo` (its ReLU threshold), INT32_MIN when none is
// confirmed: what the kernels compute per channel when p->lo_at is NULL. The firmware checks a host
// table against it once per boot (quant_tables.cpp) before the kernels use the table.
int32_t pk_lo_threshold_of(int32_t mult, int32_t shift, int32_t out_offset, int32_t lo, int32_t hi);

// The conv spans' short requantization (REQF in pk_dot_m0.S, written out in C as pk_out_fit) for a
// channel with pk_lo_threshold_of's threshold lo_at: the outputs of the accumulators lo_at + 1 ..
// lo_at + min(n, lim) into out, lim returned (0: the channel always takes the full requantization),
// lo_at into *lo_at. For the host tests, which compare it with the 64-bit formula.
int32_t pk_fit_outputs(int32_t mult, int32_t shift, int32_t out_offset, int32_t lo, int32_t hi, int32_t n,
                       int8_t* out, int32_t* lo_at);

// CMSIS-NN's arm_nn_requantize (not the single-rounding variant): (val * 2^left * mult + 2^30) >> 31,
// then a rounding right shift, midpoint away from zero.
int32_t pk_requantize(int32_t val, int32_t mult, int32_t shift);

// Convolution, int8 activations and int8 weights, per-channel quantization, dilation 1, one group.
void pk_conv_s8(const pk_conv_params* p, const int8_t* in, const int8_t* w, const int32_t* bias, int8_t* out);

// One output channel's setup in pk_conv_s8_ex, kept between the bands of an in-place convolution.
typedef struct {
    int32_t bias;      // the bias with the input offset folded in: bias + input_offset * sum of weights
    uint32_t abs_sum;  // sum of |weights| (whether the fast requantization fits)
    int32_t lo_at;     // the ReLU threshold (pk_lo_threshold)
} pk_chan_setup;

// How pk_conv_s8_ex runs one band of an in-place convolution (each band a view of the same op):
// - chan: each output channel's setup, computed and stored when chan_known == 0, read back otherwise
//   (NULL: not kept);
// - groups [group_lo, group_hi) only (group_hi < 0: all), and the channels after the last group of
//   four only when leftovers != 0: the two cores of the board image share a band this way.
typedef struct {
    pk_chan_setup* chan;
    int chan_known;
    int32_t group_lo, group_hi;
    int leftovers;
} pk_conv_opts;

// pk_conv_s8 with options (NULL: pk_conv_s8 itself).
void pk_conv_s8_ex(const pk_conv_params* p, const int8_t* in, const int8_t* w, const int32_t* bias, int8_t* out,
                   const pk_conv_opts* o);

// A group of four output channels' setup, as the conv spans read it: each channel's requantization
// and folded bias (the 17 words of pk_core.c's pk_span_fch).
#define PK_GROUP_RECORD 68

// Group oc / 4's setup into rec (PK_GROUP_RECORD words): 1 when the group takes the assembly spans
// (every channel's accumulators in the fast requantization's range, no left shift, a confirmed ReLU
// threshold), which a host record is used for; 0 otherwise. The weight sums come from w, or from
// p->wx when w is NULL.
int pk_group_record(const pk_conv_params* p, const int8_t* w, const int32_t* bias, int32_t oc, int32_t* rec);

// Whether `table` holds, for every group of four output channels of p, the record pk_group_record
// computes, each group taking the assembly spans: the check a host table passes before p->groups
// may point at it.
int pk_group_table_equal(const pk_conv_params* p, const int8_t* w, const int32_t* bias, const int32_t* table);

// The number of groups of four output channels pk_conv_s8 computes as groups (the rest one or two
// at a time): out_c / 4 when k_h * k_w * in_c fits its border patch buffer or no output reads
// padding, else 0.
int32_t pk_conv_groups(const pk_conv_params* p);

// Depthwise convolution (depth multiplier 1), int8, per-channel, dilation 1.
void pk_dwconv_s8(const pk_conv_params* p, const int8_t* in, const int8_t* w, const int32_t* bias, int8_t* out);

// The same for channels [c_lo, c_hi) only (each channel of a depthwise conv is computed on its own,
// from its own input channel): the two cores of the board image share a depthwise conv this way.
void pk_dwconv_s8_channels(const pk_conv_params* p, const int8_t* in, const int8_t* w, const int32_t* bias,
                           int8_t* out, int32_t c_lo, int32_t c_hi);

// Copies an h x w x c int8 image into a ph x pw x c one at offset (top, left), the rest filled with
// zero_point: a padded input on which a convolution has no border outputs.
// `out` may start at `in` itself (or anywhere at or above it): the copy runs last byte first.
void pk_pad_s8(const int8_t* in, int32_t h, int32_t w, int32_t c, int8_t* out, int32_t ph, int32_t pw,
               int32_t top, int32_t left, int8_t zero_point);

// Unpacks `count` int4 values (two per byte, low nibble first) into int8: TFLite's packed INT4 layout.
void pk_unpack_s4(const int8_t* packed, int32_t count, int8_t* out);

// sums[c] = sum over the hw pixels of in[pixel * c_count + c] (the reduction of a MEAN over H and W).
void pk_sum_hw_s8(const int8_t* in, int32_t hw, int32_t c_count, int32_t* sums);

// The same for channels [c_lo, c_hi) only (sums[c] for those c): the two cores' halves of a MEAN.
void pk_sum_hw_s8_range(const int8_t* in, int32_t hw, int32_t c_count, int32_t c_lo, int32_t c_hi, int32_t* sums);

#ifdef __cplusplus
}
#endif

#endif  // PICOTFLM_PK_CORE_H_
