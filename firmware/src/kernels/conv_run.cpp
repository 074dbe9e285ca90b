// See conv_run.h. Core 1 itself (its one job at a time) is pk_multicore.c's.
#include "conv_run.h"

#include "picotflm_kernels.h"

namespace picotflm {

int g_split_ops = 0;

namespace {
int g_inplace_ops = 0;  // op runs computed in place since boot

#if PICOTFLM_CORES == 2
// Core 1's share of an odd band: its rows with every channel, then its groups of the band's last row.
struct TwoParts {
  PartJob rows, last;
};

void RunTwoPartsOnCore1(void* job) {
  TwoParts& j = *static_cast<TwoParts*>(job);
  RunPartOnCore1(&j.rows);
  RunPartOnCore1(&j.last);
}
#endif
}  // namespace

// Bands of output rows, each ending before the first input byte that it or a later band still reads
// (pk_inplace_band_end), each band the one-core kernel on a view of the op (pk_part_view): the same
// arithmetic as the whole. In the board image the two cores share each band: a band of an even
// number of rows by its rows (each core half of them, every channel: pairs of groups stay together),
// an odd band of three rows or more the same but for its last row, which they share by channel
// groups (core 0 the first half of the groups, core 1 the rest and the leftover channels), a band of
// one row by groups alone. A depthwise band by channels, each core half of them on every row of the
// band. Any way, both write only the band's rows, which no read of this band or a
// later one needs, and the next band starts when both are done.
// noinline: its frame (the channel cache, the view) must not add to every conv's stack.
__attribute__((noinline)) bool RunConvInPlace(const pk_conv_params* p, const int8_t* in, const int8_t* w,
                                              const int32_t* bias, int8_t* out, bool depthwise) {
  const int64_t lead = static_cast<int64_t>(reinterpret_cast<uintptr_t>(in)) -
                       static_cast<int64_t>(reinterpret_cast<uintptr_t>(out));
  if (lead <= 0) return false;  // the output above the input: rows written first would be read later
  pk_chan_setup chan[8];  // each channel's setup, computed by the first band only (pk_conv_s8_ex)
  pk_chan_setup* const chan_cache = p->out_c <= 8 ? chan : nullptr;
  const int32_t groups = depthwise ? 0 : pk_conv_groups(p);
  const bool both = PICOTFLM_CORES == 2 && (depthwise ? p->in_c >= 2 : groups >= 2) && pk_core1_enabled();
  for (int32_t oy = 0; oy < p->out_h;) {
    const int32_t end = pk_inplace_band_end(p, oy, lead);
    if (end <= oy) return false;
    const pk_part band = {oy, end};
    if (!both) {
      const pk_conv_opts all = depthwise ? DepthwiseChannels(0, -1) : pk_conv_opts{chan_cache, oy > 0, 0, -1, 1};
      RunPart(p, band, in, w, bias, out, depthwise, &all);
    } else if (depthwise) {
#if PICOTFLM_CORES == 2
      RunDepthwiseOnBoth(p, band, in, w, bias, out);  // each core half of the channels, every row
#endif
    } else if ((end - oy) % 2 == 0) {
#if PICOTFLM_CORES == 2
      // An even band: each core half of its rows, all the channels (pairs of groups stay together).
      // Safe in place: every row of the band lands before the first input byte the band reads.
      const int32_t mid = oy + (end - oy) / 2;
      const PartJob core1 = {p, in, w, bias, out, {mid, end}, false, {oy > 0 ? chan_cache : nullptr, oy > 0, 0, -1, 1}};
      pk_core1_start(RunPartOnCore1, const_cast<PartJob*>(&core1));
      const pk_conv_opts all = {chan_cache, oy > 0, 0, -1, 1};
      RunPart(p, {oy, mid}, in, w, bias, out, false, &all);
      pk_core1_wait();
#endif
    } else if (end - oy >= 3) {
#if PICOTFLM_CORES == 2
      const int32_t mid = oy + (end - oy - 1) / 2, last = end - 1;
      pk_chan_setup* const chan1 = oy > 0 ? chan_cache : nullptr;
      TwoParts core1 = {{p, in, w, bias, out, {mid, last}, false, {chan1, oy > 0, 0, -1, 1}},
                        {p, in, w, bias, out, {last, end}, false, {chan1, oy > 0, groups / 2, groups, 1}}};
      pk_core1_start(RunTwoPartsOnCore1, &core1);
      const pk_conv_opts all = {chan_cache, oy > 0, 0, -1, 1};
      RunPart(p, {oy, mid}, in, w, bias, out, false, &all);
      const pk_conv_opts first_half = {chan_cache, oy > 0, 0, groups / 2, 0};
      RunPart(p, {last, end}, in, w, bias, out, false, &first_half);
      pk_core1_wait();
#endif
    } else {
#if PICOTFLM_CORES == 2
      const PartJob core1 = {p, in, w, bias, out, band, false, {chan_cache, oy > 0, groups / 2, groups, 1}};
      pk_core1_start(RunPartOnCore1, const_cast<PartJob*>(&core1));
      const pk_conv_opts first_half = {chan_cache, oy > 0, 0, groups / 2, 0};
      RunPart(p, band, in, w, bias, out, false, &first_half);
      pk_core1_wait();
#endif
    }
    oy = end;
  }
  g_inplace_ops++;
  if (both) g_split_ops++;
  return true;
}

#if defined(PICOTFLM_CORE1_ON_CORE0)
int CoresUsed() { return 1; }  // the splits ran, both halves on core 0 (build.emulate_core1)
#else
int CoresUsed() { return g_split_ops > 0 ? 2 : 1; }
#endif
int InplaceOps() { return g_inplace_ops; }
int SplitOps() { return g_split_ops; }
uint32_t Core1Jobs() { return pk_core1_jobs(); }
uint32_t Core1StackPeak() { return pk_core1_stack_peak(); }
uint32_t Core1StackSize() { return pk_core1_stack_size(); }

}  // namespace picotflm
