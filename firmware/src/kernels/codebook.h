// Codebook weights: a CONV_2D filter stored as `bits`-bit indices into a table of int8 values (one
// table per output channel, or one for the tensor), written by pipeline/tflite/codebook.py into the
// filter's buffer of the device model (table first, then the indices, least significant bits first,
// in the dense OHWI order). TFLM sees an int8 constant; the conv's Eval finds its codebook by the
// buffer's address and runs pk_conv_s8 on one group of four output channels at a time, decoded into
// a scratch of 20 * k bytes per core: no int8 copy of the whole filter. Plain C: the host compiles and tests it
// (tests/firmware/test_codebook_c.py).
#ifndef PICOTFLM_CODEBOOK_H_
#define PICOTFLM_CODEBOOK_H_

#include <stdint.h>

#include "pk_core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const uint8_t* data;   // the filter's buffer in the model: table, then indices
    int32_t channels;      // output channels
    int32_t k;             // weights per output channel
    int32_t bits;          // index width: 2 or 4
    int32_t entries;       // values in each table (at most 2^bits)
    int32_t per_channel;   // 1: a table per output channel; 0: one table
    int32_t table_bytes;   // where the indices start
} pk_codebook;

// The rendered model's codebooks (generated codebook_data.cc) and a scratch of 2 x 20 * k bytes for
// the largest k among them (one half per core).
extern const pk_codebook g_pk_codebooks[];
extern const int g_pk_codebook_count;
extern int8_t g_pk_codebook_scratch[];

// The codebook stored at `filter` (a filter tensor's data), or NULL when its weights are plain int8.
const pk_codebook* pk_codebook_of(const void* filter);

// Weights of output channels [ch_lo, ch_hi) as int8, (ch_hi - ch_lo) * k bytes at out.
void pk_codebook_decode(const pk_codebook* cb, int32_t ch_lo, int32_t ch_hi, int8_t* out);

// pk_conv_s8 on a codebook filter: each group of four output channels (then the leftover channels)
// decoded into `scratch` (2 x 20 * k bytes, 4-byte aligned: per core, the group as int8 and as the
// kernel's expanded int32 weights) and computed by pk_conv_s8_ex with only that group, so the
// arithmetic is the dense kernel's. In the board image core 1 takes the second half of the groups. In place (the output starting below its overlapping input) it runs
// in bands of output rows as the dense in-place path does. Returns 0 (nothing computed) when the layer
// is not one the kernel computes by groups (k larger than its patch buffer) or no row order is safe.
int pk_conv_s8_codebook(const pk_conv_params* p, const pk_codebook* cb, const int8_t* in, const int32_t* bias,
                        int8_t* out, int8_t* scratch);

#ifdef __cplusplus
}
#endif

#endif  // PICOTFLM_CODEBOOK_H_
