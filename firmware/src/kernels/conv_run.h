// Running one image of a conv or depthwise conv once its Eval has the kernels' parameters: on one
// core, split between the two cores (board image), or in place in bands of rows when the memory plan
// put the output over its own input. RunConv and its parts are inline: each Eval runs them directly.
#ifndef PICOTFLM_CONV_RUN_H_
#define PICOTFLM_CONV_RUN_H_

#include <stdint.h>

#include "pk_core.h"
#include "pk_multicore.h"

namespace picotflm {

// A conv or depthwise conv of at least this many MACs is split between the two cores (pk_split):
// about 4,000 cycles of work per core, against a few hundred for the FIFO handshake.
constexpr int32_t kSplitMinMacs = 4096;
// A conv with fewer output rows than this, and an odd number of them, is split by channel groups.
constexpr int32_t kRowSplitMinRows = 8;
// A conv of at most this many output pixels whose groups of four pair up on each core is split by
// channel groups.
constexpr int32_t kGroupSplitMaxPixels = 64;

extern int g_split_ops;  // ops run on both cores since boot

// Rows [part.oy_lo, part.oy_hi) of a conv or depthwise conv, run as a convolution of its own
// (pk_part_view), with the one-core kernels: the half of an op on one core, or a band of an op
// computed in place (then `opts` says which channel groups, and keeps the channels' setup).
struct PartJob {
  const pk_conv_params* p;
  const int8_t* in;
  const int8_t* w;
  const int32_t* bias;
  int8_t* out;
  pk_part part;
  bool depthwise;
  pk_conv_opts opts;
};

// The whole op's channels, nothing kept: what pk_conv_s8 does.
constexpr pk_conv_opts kAllChannels = {nullptr, 0, 0, -1, 1};

// A depthwise part's channels [c_lo, c_hi) (c_hi < 0: all), in a pk_conv_opts: a depthwise conv's
// channels are computed each on its own, so the cores share it by channels (each sets up only its own).
constexpr pk_conv_opts DepthwiseChannels(int32_t c_lo, int32_t c_hi) { return {nullptr, 0, c_lo, c_hi, 1}; }

// Core 0 calls it with its share's arguments (no PartJob on its stack), core 1 with a PartJob's.
// A depthwise part reads its channel range from opts' group bounds (DepthwiseChannels).
inline void RunPart(const pk_conv_params* p, const pk_part& part, const int8_t* in, const int8_t* w,
                    const int32_t* bias, int8_t* out, bool depthwise, const pk_conv_opts* opts) {
  pk_conv_params view;
  int32_t in_offset, out_offset;
  pk_part_view(p, &part, &view, &in_offset, &out_offset);
  if (depthwise)
    pk_dwconv_s8_channels(&view, in + in_offset, w, bias, out + out_offset, opts->group_lo,
                          opts->group_hi < 0 ? view.in_c : opts->group_hi);
  else pk_conv_s8_ex(&view, in + in_offset, w, bias, out + out_offset, opts);
}

#if PICOTFLM_CORES == 2
inline void RunPartOnCore1(void* job) {
  const PartJob& j = *static_cast<const PartJob*>(job);
  RunPart(j.p, j.part, j.in, j.w, j.bias, j.out, j.depthwise, &j.opts);
}
#endif

#if PICOTFLM_CORES == 2
// Rows `part` of a depthwise conv on both cores: core 0 the first half of the channels, core 1 the rest.
inline void RunDepthwiseOnBoth(const pk_conv_params* p, const pk_part& part, const int8_t* in, const int8_t* w,
                               const int32_t* bias, int8_t* out) {
  const int32_t half = p->in_c / 2;
  const PartJob core1 = {p, in, w, bias, out, part, true, DepthwiseChannels(half, p->in_c)};
  pk_core1_start(RunPartOnCore1, const_cast<PartJob*>(&core1));
  const pk_conv_opts first_half = DepthwiseChannels(0, half);
  RunPart(p, part, in, w, bias, out, true, &first_half);
  pk_core1_wait();
}
#endif

// In place (PlannedMemoryPlanner put the output `lead` bytes below its own input): bands of output
// rows (conv_run.cpp). false when no row order makes it safe.
bool RunConvInPlace(const pk_conv_params* p, const int8_t* in, const int8_t* w, const int32_t* bias, int8_t* out,
                    bool depthwise);

// One image of a conv or depthwise conv. In the board image, core 1 computes the lower half of the
// output rows while core 0 computes the upper half (disjoint outputs, each with the whole's
// arithmetic: bit-exact either way). Returns false when the output overlaps the input in a way no
// row order makes safe (then nothing sensible was computed).
inline bool RunConv(const pk_conv_params* p, const int8_t* in, const int8_t* w, const int32_t* bias, int8_t* out,
                    bool depthwise) {
  const uintptr_t in_lo = reinterpret_cast<uintptr_t>(in), out_lo = reinterpret_cast<uintptr_t>(out);
  const uintptr_t in_hi = in_lo + static_cast<uintptr_t>(p->in_h) * p->in_w * p->in_c;
  const uintptr_t out_hi = out_lo + static_cast<uintptr_t>(p->out_h) * p->out_w * p->out_c;
  if (out_lo < in_hi && in_lo < out_hi) return RunConvInPlace(p, in, w, bias, out, depthwise);
#if PICOTFLM_CORES == 2
  pk_part parts[2];
  if (pk_core1_enabled() && pk_split(p, depthwise ? 1 : 0, kSplitMinMacs, parts) == 2) {
    if (depthwise && p->in_c >= 2) {
      // By channels: each core sets up only its half of them (halves of the rows would set up all).
      RunDepthwiseOnBoth(p, {0, p->out_h}, in, w, bias, out);
      g_split_ops++;
      return true;
    }
    const int32_t groups = depthwise ? 0 : pk_conv_groups(p);
    if ((groups >= 2 && p->out_h < kRowSplitMinRows && (p->out_h & 1) != 0) ||
        (groups % 4 == 0 && groups > 0 && p->out_h * p->out_w <= kGroupSplitMaxPixels)) {
      // Few output rows, an odd number: halves of the channel groups balance the cores where halves
      // of the rows cannot (core 1 also takes the channels after the last group). Few pixels: each
      // core sets up only its own groups (halves of the rows would set up every group twice).
      const pk_part whole = {0, p->out_h};
      const PartJob core1 = {p, in, w, bias, out, whole, false, {nullptr, 0, groups / 2, groups, 1}};
      pk_core1_start(RunPartOnCore1, const_cast<PartJob*>(&core1));
      const pk_conv_opts first_half = {nullptr, 0, 0, groups / 2, 0};
      RunPart(p, whole, in, w, bias, out, false, &first_half);
      pk_core1_wait();
      g_split_ops++;
      return true;
    }
    const PartJob core1 = {p, in, w, bias, out, parts[1], depthwise, kAllChannels};
    pk_core1_start(RunPartOnCore1, const_cast<PartJob*>(&core1));
    RunPart(p, parts[0], in, w, bias, out, depthwise, &kAllChannels);
    pk_core1_wait();
    g_split_ops++;
    return true;
  }
#endif
  if (depthwise) pk_dwconv_s8(p, in, w, bias, out);
  else pk_conv_s8(p, in, w, bias, out);
  return true;
}

}  // namespace picotflm

#endif  // PICOTFLM_CONV_RUN_H_
