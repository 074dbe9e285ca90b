// See codebook.h.
#include "codebook.h"

#include <stddef.h>

#include "pk_multicore.h"

// A conv of at least this many MACs is split between the two cores, as conv_run.h's kSplitMinMacs.
#define PK_CODEBOOK_SPLIT_MIN_MACS 4096

const pk_codebook* pk_codebook_of(const void* filter) {
    for (int i = 0; i < g_pk_codebook_count; i++)
        if ((const void*)g_pk_codebooks[i].data == filter) return &g_pk_codebooks[i];
    return (const pk_codebook*)0;
}

void pk_codebook_decode(const pk_codebook* cb, int32_t ch_lo, int32_t ch_hi, int8_t* out) {
    const int32_t bits = cb->bits, size = 1 << bits, k = cb->k;
    const int32_t per_log = bits == 2 ? 2 : 1;  // indices a byte: 4 or 2
    const int32_t per_mask = (1 << per_log) - 1;
    const uint32_t mask = (uint32_t)(size - 1);
    const uint8_t* index = cb->data + cb->table_bytes;
    for (int32_t c = ch_lo; c < ch_hi; c++) {
        const int8_t* table = (const int8_t*)cb->data + (cb->per_channel ? c * cb->entries : 0);
        for (int32_t e = c * k, end = e + k; e < end; e++)  // e: the element number in the dense order
            *out++ = table[(index[e >> per_log] >> ((e & per_mask) * bits)) & mask];
    }
}

static int all_zero(const int8_t* w, int32_t n) {
    const uint8_t* b = (const uint8_t*)w;
    uint32_t any = 0;
    for (int32_t i = 0; i < n; i++) any |= b[i];
    return any == 0;
}

// Output channels [oc, oc + 4) of a group whose weights are all zero: every output is the bias alone,
// requantized and clamped as the kernel does it (pk_requantize is its arithmetic, bit for bit).
static void constant_group(const pk_conv_params* p, const int32_t* bias, int8_t* out, int32_t oc) {
    int8_t v[4];
    for (int32_t j = 0; j < 4; j++) {
        int32_t r = pk_requantize(bias ? bias[oc + j] : 0, p->mult[oc + j], p->shift[oc + j]) + p->output_offset;
        r = r < p->act_min ? p->act_min : r > p->act_max ? p->act_max : r;
        v[j] = (int8_t)r;
    }
    const int32_t pixels = p->out_h * p->out_w;
    for (int32_t i = 0; i < pixels; i++) {
        int8_t* o = out + i * p->out_c + oc;
        o[0] = v[0];
        o[1] = v[1];
        o[2] = v[2];
        o[3] = v[3];
    }
}

// Every group of four output channels, then the leftovers, of a conv (or a band of one: a view). Each
// group's weights are decoded as int8 (the kernel's per-channel sums read them) and expanded to int32,
// interleaved by channel, as the kernel's wide path reads the host's expanded weights (pk_span4w).
// Groups [g_lo, g_hi), and the leftover channels when `leftovers`.
static void conv_groups(const pk_conv_params* p, const pk_codebook* cb, const int8_t* in, const int32_t* bias,
                        int8_t* out, int8_t* scratch, int32_t g_lo, int32_t g_hi, int leftovers) {
    const int32_t k = cb->k, groups = p->out_c / 4;
    int32_t* wide = (int32_t*)(void*)scratch;  // 4 * k words
    int8_t* narrow = scratch + 16 * k;          // 4 * k bytes
    pk_conv_params q = *p;
    q.wx8 = (const int32_t*)0;     // one group at a time, from the scratch
    q.groups = (const int32_t*)0;  // the host's records are for int8 filters, not codebooks
    for (int32_t g = g_lo; g < g_hi; g++) {
        pk_codebook_decode(cb, 4 * g, 4 * g + 4, narrow);
        if (all_zero(narrow, 4 * k)) {  // a pruned group: no multiply-accumulate, the same bytes
            constant_group(p, bias, out, 4 * g);
            continue;
        }
        for (int32_t x = 0; x < k; x++)
            for (int32_t j = 0; j < 4; j++) wide[x * 4 + j] = narrow[j * k + x];
        const pk_conv_opts one = {(pk_chan_setup*)0, 0, g, g + 1, 0};
        // The kernel reads group g's weights at w + 4 * g * k and wx + 4 * g * k: the scratch holds them.
        q.wx = (const int32_t*)((uintptr_t)wide - (uintptr_t)(16 * g * k));
        pk_conv_s8_ex(&q, in, (const int8_t*)((uintptr_t)narrow - (uintptr_t)(4 * g * k)), bias, out, &one);
    }
    if (leftovers && p->out_c > 4 * groups) {
        pk_codebook_decode(cb, 4 * groups, p->out_c, narrow);
        const pk_conv_opts rest = {(pk_chan_setup*)0, 0, groups, groups, 1};
        q.wx = (const int32_t*)0;
        pk_conv_s8_ex(&q, in, (const int8_t*)((uintptr_t)narrow - (uintptr_t)(4 * groups * k)), bias, out, &rest);
    }
}

// A conv's groups on both cores of the board image: core 1 the second half of the groups and the
// leftovers, with the second half of the scratch; each core decodes only its own groups.
typedef struct {
    const pk_conv_params* p;
    const pk_codebook* cb;
    const int8_t* in;
    const int32_t* bias;
    int8_t* out;
    int8_t* scratch;
    int32_t g_lo, g_hi;
} cb_job;

#if defined(PICOTFLM_CORES) && PICOTFLM_CORES == 2
static void cb_job_run(void* arg) {
    const cb_job* j = (const cb_job*)arg;
    conv_groups(j->p, j->cb, j->in, j->bias, j->out, j->scratch, j->g_lo, j->g_hi, 1);
}
#endif

static void conv_all(const pk_conv_params* p, const pk_codebook* cb, const int8_t* in, const int32_t* bias,
                     int8_t* out, int8_t* scratch) {
    const int32_t groups = p->out_c / 4;
#if defined(PICOTFLM_CORES) && PICOTFLM_CORES == 2
    const int32_t macs = p->out_h * p->out_w * p->out_c * cb->k;
    if (groups >= 2 && macs >= PK_CODEBOOK_SPLIT_MIN_MACS && pk_core1_enabled()) {
        const cb_job core1 = {p, cb, in, bias, out, scratch + 20 * cb->k, groups / 2, groups};
        pk_core1_start(cb_job_run, (void*)&core1);
        conv_groups(p, cb, in, bias, out, scratch, 0, groups / 2, 0);
        pk_core1_wait();
        return;
    }
#endif
    conv_groups(p, cb, in, bias, out, scratch, 0, groups, 1);
}

int pk_conv_s8_codebook(const pk_conv_params* p, const pk_codebook* cb, const int8_t* in, const int32_t* bias,
                        int8_t* out, int8_t* scratch) {
    if (pk_conv_groups(p) != p->out_c / 4 || cb->channels != p->out_c || p->k_h * p->k_w * p->in_c != cb->k)
        return 0;
    pk_conv_params q = *p;  // conv_groups sets the expanded weights (wx) of each group
    const uintptr_t in_lo = (uintptr_t)in, out_lo = (uintptr_t)out;
    const uintptr_t in_hi = in_lo + (uintptr_t)(q.in_h * q.in_w * q.in_c);
    const uintptr_t out_hi = out_lo + (uintptr_t)(q.out_h * q.out_w * q.out_c);
    if (!(out_lo < in_hi && in_lo < out_hi)) {
        conv_all(&q, cb, in, bias, out, scratch);
        return 1;
    }
    // In place (the memory plan put the output `lead` bytes below its input): bands of output rows
    // that overwrite no input row a later band reads, as conv_run.cpp's RunConvInPlace does; both
    // cores write only the band's rows, and the next band starts when both are done.
    if (out_lo >= in_lo) return 0;
    const int64_t lead = (int64_t)(in_lo - out_lo);
    for (int32_t oy = 0; oy < q.out_h;) {
        const int32_t end = pk_inplace_band_end(&q, oy, lead);
        if (end <= oy) return 0;
        const pk_part band = {oy, end};
        pk_conv_params view;
        int32_t in_offset, out_offset;
        pk_part_view(&q, &band, &view, &in_offset, &out_offset);
        conv_all(&view, cb, in + in_offset, bias, out + out_offset, scratch);
        oy = end;
    }
    return 1;
}
