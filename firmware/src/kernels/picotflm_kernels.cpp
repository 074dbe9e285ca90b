// picotflm's TFLM kernel registrations: TFLM's own Prepare (shapes, padding, per-channel
// multipliers, the int4 unpack buffer), our Eval (pk_core.c). See picotflm_kernels.h.
#include "picotflm_kernels.h"

#include <string.h>

#include "pk_core.h"
#include "pk_multicore.h"
#include "tensorflow/lite/c/builtin_op_data.h"
#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/kernels/internal/common.h"
#include "tensorflow/lite/kernels/internal/portable_tensor_utils.h"
#include "tensorflow/lite/kernels/internal/reference/integer_ops/conv.h"
#include "tensorflow/lite/kernels/internal/reference/integer_ops/depthwise_conv.h"
#include "tensorflow/lite/micro/kernels/conv.h"
#include "tensorflow/lite/micro/kernels/depthwise_conv.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"
#include "tensorflow/lite/micro/kernels/reduce.h"
#include "tensorflow/lite/micro/micro_context.h"
#include "tensorflow/lite/micro/micro_log.h"

namespace picotflm {
namespace {

using tflite::OpDataConv;

// What a conv or depthwise conv keeps in the arena for its Eval: 16 bytes, one slot of the arena's
// 16-byte alignment (TFLM's OpDataConv takes 64, DepthwiseData took 80). With `table` set, the op runs
// our fast path with a host table's per-channel arrays (in flash), and these fields are all it reads.
// With `table` null, TFLM's OpDataConv follows (FullConvData): no table matched, or the op needs TFLM's
// reference kernel, or its activations are not int8.
struct ConvData {
  const QuantTable* table;
  int16_t pad_h, pad_w;
  int8_t input_zero_point, output_zero_point, act_min, act_max;
  int16_t filter_buffer_index;  // the int4 unpack buffer TFLM's Prepare requested, or -1
  // DEPTHWISE_CONV_2D: the scratch index of the padded copy of its input (DepthwisePrepare);
  // CONV_2D: the index of the host table whose expanded weights equal the op's (ConvPrepare). Or -1.
  int16_t aux;
};
static_assert(sizeof(ConvData) == 16, "ConvData is one 16-byte arena slot");

struct FullConvData {
  ConvData head;  // head.table == nullptr
  OpDataConv conv;
};

const OpDataConv* Full(const ConvData& d) {
  return d.table == nullptr ? &reinterpret_cast<const FullConvData*>(&d)->conv : nullptr;
}

// Filter data as int8: int4 weights are unpacked into the scratch buffer TFLM's Prepare requested.
const int8_t* FilterInt8(TfLiteContext* context, const TfLiteEvalTensor* filter, int filter_buffer_index) {
  if (filter->type == kTfLiteInt8) return tflite::micro::GetTensorData<int8_t>(filter);
  int8_t* unpacked = static_cast<int8_t*>(context->GetScratchBuffer(context, filter_buffer_index));
  pk_unpack_s4(tflite::micro::GetTensorData<int8_t>(filter), tflite::micro::GetTensorShape(filter).FlatSize(),
               unpacked);
  return unpacked;
}

// ------------------------------------------------------------------ host-computed ReLU thresholds

const QuantTable* g_tables = nullptr;
int g_table_count = 0;
constexpr int kMaxCheckedTables = 128;
uint32_t g_lo_checked[kMaxCheckedTables / 32];  // bit i: table i's thresholds were compared
uint32_t g_lo_equal[kMaxCheckedTables / 32];    // ... and were all equal to pk_lo_threshold_of's

bool Bit(const uint32_t* bits, int i) { return (bits[i / 32] >> (i % 32)) & 1u; }

// Compares table i's thresholds with the firmware's own, once per boot.
void CheckThresholds(int i) {
  if (i >= kMaxCheckedTables || Bit(g_lo_checked, i)) return;
  const QuantTable& t = g_tables[i];
  bool equal = t.lo_at != nullptr;
  for (int c = 0; c < t.channels && equal; c++)
    equal = t.lo_at[c] == pk_lo_threshold_of(t.mult[c], t.shift[c], t.out_offset, t.act_min, t.act_max);
  g_lo_checked[i / 32] |= 1u << (i % 32);
  if (equal) g_lo_equal[i / 32] |= 1u << (i % 32);
}

// Table i's thresholds, if they were checked equal and the op's output offset and activation range
// are the table's; else nullptr.
const int32_t* ThresholdsOf(int i, int32_t output_offset, int32_t act_min, int32_t act_max) {
  const QuantTable& t = g_tables[i];
  if (i < kMaxCheckedTables && Bit(g_lo_equal, i) && t.out_offset == output_offset && t.act_min == act_min &&
      t.act_max == act_max)
    return t.lo_at;
  return nullptr;
}

// The thresholds for an op with TFLM's OpDataConv whose per-channel arrays are a host table's.
const int32_t* Thresholds(const OpDataConv& data) {
  for (int i = 0; i < g_table_count; i++) {
    if (g_tables[i].mult == data.per_channel_output_multiplier)
      return ThresholdsOf(i, data.output_zero_point, data.output_activation_min, data.output_activation_max);
  }
  return nullptr;
}

pk_conv_params Params(const TfLiteEvalTensor* input, const TfLiteEvalTensor* filter, const TfLiteEvalTensor* output,
                      int stride_h, int stride_w) {
  pk_conv_params p;
  p.in_h = input->dims->data[1];
  p.in_w = input->dims->data[2];
  p.in_c = input->dims->data[3];
  p.out_h = output->dims->data[1];
  p.out_w = output->dims->data[2];
  p.out_c = output->dims->data[3];
  p.k_h = filter->dims->data[1];
  p.k_w = filter->dims->data[2];
  p.stride_h = stride_h;
  p.stride_w = stride_w;
  p.wx = nullptr;
  return p;
}

pk_conv_params Params(const TfLiteEvalTensor* input, const TfLiteEvalTensor* filter, const TfLiteEvalTensor* output,
                      int stride_h, int stride_w, const ConvData& d) {
  pk_conv_params p = Params(input, filter, output, stride_h, stride_w);
  if (const OpDataConv* data = Full(d)) {
    p.pad_h = data->padding.height;
    p.pad_w = data->padding.width;
    p.input_offset = -data->input_zero_point;
    p.output_offset = data->output_zero_point;
    p.act_min = data->output_activation_min;
    p.act_max = data->output_activation_max;
    p.mult = data->per_channel_output_multiplier;
    p.shift = data->per_channel_output_shift;
    p.lo_at = Thresholds(*data);
    return p;
  }
  p.pad_h = d.pad_h;
  p.pad_w = d.pad_w;
  p.input_offset = -d.input_zero_point;
  p.output_offset = d.output_zero_point;
  p.act_min = d.act_min;
  p.act_max = d.act_max;
  p.mult = d.table->mult;
  p.shift = d.table->shift;
  p.lo_at = ThresholdsOf(static_cast<int>(d.table - g_tables), d.output_zero_point, d.act_min, d.act_max);
  return p;
}

// Whether two tensors share a byte (only an in-place memory plan makes an op's output overlap its input).
bool Overlap(const TfLiteEvalTensor* a, const TfLiteEvalTensor* b) {
  const auto lo_a = reinterpret_cast<uintptr_t>(a->data.data), lo_b = reinterpret_cast<uintptr_t>(b->data.data);
  const uintptr_t hi_a = lo_a + tflite::micro::GetTensorShape(a).FlatSize();
  const uintptr_t hi_b = lo_b + tflite::micro::GetTensorShape(b).FlatSize();
  return lo_a < hi_b && lo_b < hi_a;
}

// ------------------------------------------------------------------------- both cores (board image)

// A conv or depthwise conv of at least this many MACs is split between the two cores (pk_split):
// about 4,000 cycles of work per core, against a few hundred for the FIFO handshake.
constexpr int32_t kSplitMinMacs = 4096;

int g_split_ops = 0;  // ops run on both cores since boot

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

// Core 0 calls it with its share's arguments (no PartJob on its stack), core 1 with a PartJob's.
void RunPart(const pk_conv_params* p, const pk_part& part, const int8_t* in, const int8_t* w, const int32_t* bias,
             int8_t* out, bool depthwise, const pk_conv_opts* opts) {
  pk_conv_params view;
  int32_t in_offset, out_offset;
  pk_part_view(p, &part, &view, &in_offset, &out_offset);
  if (depthwise) pk_dwconv_s8(&view, in + in_offset, w, bias, out + out_offset);
  else pk_conv_s8_ex(&view, in + in_offset, w, bias, out + out_offset, opts);
}

#if PICOTFLM_CORES == 2
void RunPartOnCore1(void* job) {
  const PartJob& j = *static_cast<const PartJob*>(job);
  RunPart(j.p, j.part, j.in, j.w, j.bias, j.out, j.depthwise, &j.opts);
}
#endif

int g_inplace_ops = 0;  // op runs computed in place since boot

// In place (PlannedMemoryPlanner put the output `lead` bytes below its own input): bands of output
// rows, each ending before the first input byte that it or a later band still reads
// (pk_inplace_band_end), each band the one-core kernel on a view of the op (pk_part_view): the same
// arithmetic as the whole. In the board image the two cores share each band by channel groups
// (core 0 the first half of the groups, core 1 the rest and the leftover channels): both write only
// the band's rows, which no later read needs, and the next band starts when both are done.
// noinline: its frame (the channel cache, the view) must not add to every conv's stack.
__attribute__((noinline)) bool RunConvInPlace(const pk_conv_params* p, const int8_t* in, const int8_t* w,
                                              const int32_t* bias, int8_t* out, bool depthwise) {
  const int64_t lead = static_cast<int64_t>(reinterpret_cast<uintptr_t>(in)) -
                       static_cast<int64_t>(reinterpret_cast<uintptr_t>(out));
  if (lead <= 0) return false;  // the output above the input: rows written first would be read later
  int32_t chan[3 * 8];  // each channel's setup, computed by the first band only (pk_conv_s8_ex)
  int32_t* const chan_cache = p->out_c <= 8 ? chan : nullptr;
  const int32_t groups = depthwise ? 0 : pk_conv_groups(p);
  const bool both = PICOTFLM_CORES == 2 && groups >= 2;
  for (int32_t oy = 0; oy < p->out_h;) {
    const int32_t end = pk_inplace_band_end(p, oy, lead);
    if (end <= oy) return false;
    const pk_part band = {oy, end};
    if (!both) {
      const pk_conv_opts all = {chan_cache, oy > 0, 0, -1, 1};
      RunPart(p, band, in, w, bias, out, depthwise, &all);
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

// One image of a conv or depthwise conv. In the board image, core 1 computes the lower half of the
// output rows while core 0 computes the upper half (disjoint outputs, each with the whole's
// arithmetic: bit-exact either way). Returns false when the output overlaps the input in a way no
// row order makes safe (then nothing sensible was computed).
bool RunConv(const pk_conv_params* p, const int8_t* in, const int8_t* w, const int32_t* bias, int8_t* out,
             bool depthwise) {
  const uintptr_t in_lo = reinterpret_cast<uintptr_t>(in), out_lo = reinterpret_cast<uintptr_t>(out);
  const uintptr_t in_hi = in_lo + static_cast<uintptr_t>(p->in_h) * p->in_w * p->in_c;
  const uintptr_t out_hi = out_lo + static_cast<uintptr_t>(p->out_h) * p->out_w * p->out_c;
  if (out_lo < in_hi && in_lo < out_hi) return RunConvInPlace(p, in, w, bias, out, depthwise);
#if PICOTFLM_CORES == 2
  pk_part parts[2];
  if (pk_split(p, depthwise ? 1 : 0, kSplitMinMacs, parts) == 2) {
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

// ------------------------------------------------------------- per-channel tables kept out of the arena

int g_matched = 0;
int g_missed = 0;
int g_wide = 0;  // convolutions using a table's expanded weights (WideTable)
QuantCacheSlot* g_cache = nullptr;
int g_cache_hits = 0;

// The result of the PopulateConvolutionQuantizationParams call of the Prepare running now, waiting
// for PrepareWithTables to confirm its table (on its stack while it runs: no static RAM).
struct Pending {
  bool valid = false;
  QuantCacheSlot slot{};
};
Pending* g_pending = nullptr;

// While TFLM's Prepare runs, its two per-channel arrays (the first two persistent allocations) are
// served from temporary memory; afterwards they are replaced by a host table with the same content,
// or copied to persistent memory when no table matches.
struct PerChannelCapture {
  void* (*persistent)(TfLiteContext*, size_t) = nullptr;
  uint8_t* temp[2] = {nullptr, nullptr};
  size_t bytes[2] = {0, 0};
  int count = 0;
};
PerChannelCapture g_capture;

void* CapturePersistent(TfLiteContext* context, size_t bytes) {
  if (g_capture.count < 2) {
    uint8_t* p = tflite::GetMicroContext(context)->AllocateTempBuffer(bytes, alignof(int32_t));
    if (p == nullptr) return nullptr;
    g_capture.temp[g_capture.count] = p;
    g_capture.bytes[g_capture.count] = bytes;
    g_capture.count++;
    return p;
  }
  return g_capture.persistent(context, bytes);
}

// Whether the persistent buffer at `p` reaches into any of the `n` temporary buffers (which sit below
// TFLM's persistent tail, at the head).
bool Reaches(const void* p, uint8_t* const* temp, const size_t* bytes, int n) {
  for (int i = 0; i < n; i++)
    if (temp[i] != nullptr && static_cast<const uint8_t*>(p) < temp[i] + bytes[i]) return true;
  return false;
}

// A persistent buffer of `bytes` clear of the temporary buffer `temp` still to be copied from, or
// nullptr (with the reason in TFLM's log) when the arena has no such room.
void* PersistentBeside(TfLiteContext* context, size_t bytes, const void* temp, size_t temp_bytes) {
  void* p = context->AllocatePersistentBuffer(context, bytes);
  uint8_t* const temps[1] = {static_cast<uint8_t*>(const_cast<void*>(temp))};
  const size_t sizes[1] = {temp_bytes};
  if (p != nullptr && !Reaches(p, temps, sizes, 1)) return p;
  MicroPrintf("picotflm: the arena is too small to keep the op's data");
  return nullptr;
}

const QuantTable* MatchTable(const int32_t* mult, const int32_t* shift, int channels) {
  for (int i = 0; i < g_table_count; i++) {
    const QuantTable& t = g_tables[i];
    if (t.channels != channels) continue;
    bool same = true;
    for (int c = 0; c < channels && same; c++) same = t.mult[c] == mult[c] && t.shift[c] == shift[c];
    if (same) return &t;
  }
  return nullptr;
}

// TFLM's Prepare for a conv or depthwise conv (`prepare`, on `data`, which node->user_data points
// at). `*matched`: the host table whose per-channel arrays the op now uses, or nullptr.
TfLiteStatus PrepareWithTables(TfLiteContext* context, TfLiteNode* node,
                               TfLiteStatus (*prepare)(TfLiteContext*, TfLiteNode*), OpDataConv* data,
                               const QuantTable** matched) {
  *matched = nullptr;
  Pending pending;
  g_pending = g_cache != nullptr ? &pending : nullptr;
  g_capture = PerChannelCapture();
  g_capture.persistent = context->AllocatePersistentBuffer;
  context->AllocatePersistentBuffer = CapturePersistent;
  const TfLiteStatus status = prepare(context, node);
  context->AllocatePersistentBuffer = g_capture.persistent;
  tflite::MicroContext* micro = tflite::GetMicroContext(context);
  TfLiteStatus result = status;
  if (status == kTfLiteOk && g_capture.count == 2 && g_capture.bytes[0] == g_capture.bytes[1] &&
      data->per_channel_output_multiplier == reinterpret_cast<int32_t*>(g_capture.temp[0]) &&
      data->per_channel_output_shift == reinterpret_cast<int32_t*>(g_capture.temp[1])) {
    const int channels = static_cast<int>(g_capture.bytes[0] / sizeof(int32_t));
    const QuantTable* t = MatchTable(data->per_channel_output_multiplier, data->per_channel_output_shift, channels);
    if (t != nullptr) g_matched++;
    else g_missed++;
    if (t != nullptr) CheckThresholds(static_cast<int>(t - g_tables));
    if (t != nullptr) {
      *matched = t;
      data->per_channel_output_multiplier = const_cast<int32_t*>(t->mult);
      data->per_channel_output_shift = const_cast<int32_t*>(t->shift);
      if (g_cache != nullptr && pending.valid) {  // confirmed: the next Prepare of this op may skip it
        QuantCacheSlot& slot = g_cache[t - g_tables];
        const void* wide_filter = slot.wide_filter;  // WideTable's, kept
        slot = pending.slot;
        slot.valid = true;
        slot.wide_filter = wide_filter;
      }
    } else {  // no table: what TFLM would have kept
      for (int i = 0; i < 2; i++) {
        auto* keep = static_cast<int32_t*>(g_capture.persistent(context, g_capture.bytes[i]));
        // TFLM checks a persistent allocation against the head only, not the temporary buffers
        // above it: one that reaches into them would be overwritten by its own copy.
        if (keep == nullptr || Reaches(keep, g_capture.temp, g_capture.bytes, 2)) {
          MicroPrintf("picotflm: the arena is too small to keep the per-channel arrays");
          result = kTfLiteError;
          break;
        }
        const auto* from = reinterpret_cast<const int32_t*>(g_capture.temp[i]);
        for (int c = 0; c < channels; c++) keep[c] = from[c];
        if (i == 0) data->per_channel_output_multiplier = keep;
        else data->per_channel_output_shift = keep;
      }
    }
  } else if (status == kTfLiteOk && g_capture.count > 0) {
    MicroPrintf("picotflm: unexpected per-channel allocations in Prepare");
    result = kTfLiteError;
  }
  for (int i = g_capture.count - 1; i >= 0; i--) micro->DeallocateTempBuffer(g_capture.temp[i]);
  g_capture = PerChannelCapture();
  g_pending = nullptr;
  return result;
}

// ---------------------------------------------------------------------------------------- CONV_2D

// TFLM's reference kernels for what the fast paths do not cover, out of line: their shapes and
// parameter structs (about 300 bytes) stay off the stack of every Eval.
__attribute__((noinline)) void ConvReference(const TfLiteConvParams& params, const OpDataConv& data,
                                             const TfLiteEvalTensor* input, const TfLiteEvalTensor* filter,
                                             const TfLiteEvalTensor* bias, const TfLiteEvalTensor* output,
                                             const int8_t* in, const int8_t* w, const int32_t* b, int8_t* out) {
  tflite::reference_integer_ops::ConvPerChannel(
      tflite::ConvParamsQuantized(params, data), data.per_channel_output_multiplier, data.per_channel_output_shift,
      tflite::micro::GetTensorShape(input), in, tflite::micro::GetTensorShape(filter), w,
      tflite::micro::GetTensorShape(bias), b, tflite::micro::GetTensorShape(output), out);
}

__attribute__((noinline)) void DepthwiseReference(const TfLiteDepthwiseConvParams& params, const OpDataConv& data,
                                                  const TfLiteEvalTensor* input, const TfLiteEvalTensor* filter,
                                                  const TfLiteEvalTensor* bias, const TfLiteEvalTensor* output,
                                                  const int8_t* in, const int8_t* w, const int32_t* b, int8_t* out) {
  tflite::reference_integer_ops::DepthwiseConvPerChannel(
      tflite::DepthwiseConvParamsQuantized(params, data), data.per_channel_output_multiplier,
      data.per_channel_output_shift, tflite::micro::GetTensorShape(input), in, tflite::micro::GetTensorShape(filter),
      w, tflite::micro::GetTensorShape(bias), b, tflite::micro::GetTensorShape(output), out);
}

// Init: the 16-byte ConvData (the node's user_data from then on). TFLM's conv and depthwise Init
// allocate their OpDataConv here instead.
void* ConvDataInit(TfLiteContext* context, const char* buffer, size_t length) {
  void* d = context->AllocatePersistentBuffer(context, sizeof(ConvData));
  if (d != nullptr) memset(d, 0, sizeof(ConvData));
  return d;
}

// Runs TFLM's Prepare on a temporary OpDataConv, then keeps what Eval reads: the ConvData alone when
// the op takes our fast path (`fast`: its shape and types allow it) with a host table, else TFLM's
// OpDataConv too (FullConvData, and node->user_data points at it). The ConvData is `d`, the Init one.
TfLiteStatus PrepareConvData(TfLiteContext* context, TfLiteNode* node,
                             TfLiteStatus (*prepare)(TfLiteContext*, TfLiteNode*), bool fast, ConvData* d) {
  TF_LITE_ENSURE(context, d != nullptr);
  tflite::MicroContext* micro = tflite::GetMicroContext(context);
  auto* temp = reinterpret_cast<OpDataConv*>(micro->AllocateTempBuffer(sizeof(OpDataConv), alignof(OpDataConv)));
  TF_LITE_ENSURE(context, temp != nullptr);
  memset(temp, 0, sizeof(OpDataConv));
  node->user_data = temp;  // TFLM's Prepare reads node->user_data as its OpDataConv
  const QuantTable* table = nullptr;
  TfLiteStatus status = PrepareWithTables(context, node, prepare, temp, &table);
  node->user_data = d;
  const int32_t act_min = temp->output_activation_min, act_max = temp->output_activation_max;
  const bool int8_range = temp->input_zero_point >= -128 && temp->input_zero_point <= 127 &&
                          temp->output_zero_point >= -128 && temp->output_zero_point <= 127 && act_min >= -128 &&
                          act_max <= 127 && temp->filter_buffer_index >= -1 && temp->filter_buffer_index <= 32767;
  d->aux = -1;
  if (status == kTfLiteOk && fast && table != nullptr && int8_range) {
    d->table = table;
    d->pad_h = static_cast<int16_t>(temp->padding.height);
    d->pad_w = static_cast<int16_t>(temp->padding.width);
    d->input_zero_point = static_cast<int8_t>(temp->input_zero_point);
    d->output_zero_point = static_cast<int8_t>(temp->output_zero_point);
    d->act_min = static_cast<int8_t>(act_min);
    d->act_max = static_cast<int8_t>(act_max);
    d->filter_buffer_index = static_cast<int16_t>(temp->filter_buffer_index);
  } else if (status == kTfLiteOk) {
    auto* full = static_cast<FullConvData*>(PersistentBeside(context, sizeof(FullConvData), temp, sizeof(*temp)));
    if (full == nullptr) {
      status = kTfLiteError;
    } else {
      full->head = ConvData();
      full->head.table = nullptr;
      full->head.aux = -1;
      full->head.filter_buffer_index = -1;
      full->conv = *temp;
      node->user_data = full;  // the Init ConvData (16 bytes) stays unused
    }
  }
  micro->DeallocateTempBuffer(reinterpret_cast<uint8_t*>(temp));
  return status;
}

// Weight e of an int8 or packed int4 (two a byte, the first in the low nibble) filter.
int32_t Weight(const TfLiteEvalTensor* filter, int e) {
  if (filter->type == kTfLiteInt8) return filter->data.int8[e];
  const uint8_t b = static_cast<uint8_t>(filter->data.int8[e / 2]);
  const int32_t v = (e & 1) ? b >> 4 : b & 0x0F;
  return v > 7 ? v - 16 : v;
}

// The index of the host table whose expanded weights (QuantTable::wx) equal this conv's filter, or
// -1. Compared in full at every Prepare: a table is used only by an op whose weights it holds.
int WideTable(const TfLiteEvalTensor* filter) {
  if (filter->dims->size != 4 || (filter->type != kTfLiteInt8 && filter->type != kTfLiteInt4)) return -1;
  const int oc = filter->dims->data[0];
  const int k = filter->dims->data[1] * filter->dims->data[2] * filter->dims->data[3];
  // A switching firmware sets each model up again at every switch: a table found equal to weights
  // that stay in flash is taken again without the comparison (about 200 us for MicroPizzaNet).
  const bool in_flash = (reinterpret_cast<uintptr_t>(filter->data.raw) >> 24) == 0x10;  // XIP flash
  if (g_cache != nullptr && in_flash) {
    for (int i = 0; i < g_table_count && i <= 32767; i++)
      if (g_cache[i].wide_filter == filter->data.raw && g_tables[i].channels == oc) return i;
  }
  for (int i = 0; i < g_table_count && i <= 32767; i++) {
    const QuantTable& t = g_tables[i];
    if (t.wx == nullptr || t.channels != oc) continue;
    bool same = true;
    for (int g = 0; g < oc / 4 && same; g++)
      for (int j = 0; j < 4 && same; j++)
        for (int x = 0; x < k && same; x++) same = t.wx[(g * k + x) * 4 + j] == Weight(filter, (4 * g + j) * k + x);
    if (same) {
      if (g_cache != nullptr && in_flash) g_cache[i].wide_filter = filter->data.raw;
      return i;
    }
  }
  return -1;
}

TfLiteStatus ConvPrepare(TfLiteContext* context, TfLiteNode* node) {
  const auto& params = *static_cast<const TfLiteConvParams*>(node->builtin_data);
  // The eval tensors (type, shape, data), not temporary TfLiteTensors: nothing to parse or free.
  const TfLiteEvalTensor* input = tflite::micro::GetEvalInput(context, node, tflite::kConvInputTensor);
  const TfLiteEvalTensor* filter = tflite::micro::GetEvalInput(context, node, tflite::kConvWeightsTensor);
  const TfLiteEvalTensor* bias =
      node->inputs->size == 3 ? tflite::micro::GetEvalInput(context, node, tflite::kConvBiasTensor) : nullptr;
  TF_LITE_ENSURE(context, input != nullptr && filter != nullptr);
  // What ConvEval's fast path needs (it checks each again and refuses the rest with an error).
  const bool fast = input->type == kTfLiteInt8 && (filter->type == kTfLiteInt8 || filter->type == kTfLiteInt4) &&
                    (bias == nullptr || bias->type == kTfLiteInt32) && params.dilation_height_factor == 1 &&
                    params.dilation_width_factor == 1 && input->dims->size == 4 && filter->dims->size == 4 &&
                    input->dims->data[3] == filter->dims->data[3];
  const int wide = fast ? WideTable(filter) : -1;
  TF_LITE_ENSURE_STATUS(
      PrepareConvData(context, node, tflite::ConvPrepare, fast, static_cast<ConvData*>(node->user_data)));
  static_cast<ConvData*>(node->user_data)->aux = static_cast<int16_t>(wide);
  if (wide >= 0) g_wide++;
  return kTfLiteOk;
}

TfLiteStatus ConvEval(TfLiteContext* context, TfLiteNode* node) {
  const auto& params = *static_cast<const TfLiteConvParams*>(node->builtin_data);
  const ConvData& d = *static_cast<const ConvData*>(node->user_data);
  const OpDataConv* data = Full(d);
  const TfLiteEvalTensor* input = tflite::micro::GetEvalInput(context, node, tflite::kConvInputTensor);
  const TfLiteEvalTensor* filter = tflite::micro::GetEvalInput(context, node, tflite::kConvWeightsTensor);
  const TfLiteEvalTensor* bias =
      node->inputs->size == 3 ? tflite::micro::GetEvalInput(context, node, tflite::kConvBiasTensor) : nullptr;
  TfLiteEvalTensor* output = tflite::micro::GetEvalOutput(context, node, tflite::kConvOutputTensor);
  TF_LITE_ENSURE_MSG(context, input->type == kTfLiteInt8, "picotflm CONV_2D: only int8 activations");
  TF_LITE_ENSURE_MSG(context, filter->type == kTfLiteInt8 || filter->type == kTfLiteInt4,
                     "picotflm CONV_2D: only int8 or int4 weights");
  TF_LITE_ENSURE_MSG(context, bias == nullptr || bias->type == kTfLiteInt32, "picotflm CONV_2D: int32 bias only");
  const int8_t* w = FilterInt8(context, filter, data ? data->filter_buffer_index : d.filter_buffer_index);
  const int32_t* b = bias ? tflite::micro::GetTensorData<int32_t>(bias) : nullptr;
  const int8_t* in = tflite::micro::GetTensorData<int8_t>(input);
  int8_t* out = tflite::micro::GetTensorData<int8_t>(output);

  const bool fast = params.dilation_height_factor == 1 && params.dilation_width_factor == 1 &&
                    input->dims->data[3] == filter->dims->data[3];  // one group
  if (!fast) {
    TF_LITE_ENSURE_MSG(context, data != nullptr, "picotflm CONV_2D: the op's data was prepared for the fast path");
    TF_LITE_ENSURE_MSG(context, !Overlap(input, output),
                       "picotflm CONV_2D: the plan put the output over the input of an op it cannot run in place");
    ConvReference(params, *data, input, filter, bias, output, in, w, b, out);
    return kTfLiteOk;
  }
  pk_conv_params p = Params(input, filter, output, params.stride_height, params.stride_width, d);
  p.wx = d.aux >= 0 ? g_tables[d.aux].wx : nullptr;
  const int in_size = p.in_h * p.in_w * p.in_c, out_size = p.out_h * p.out_w * p.out_c;
  for (int n = 0; n < input->dims->data[0]; n++) {
    TF_LITE_ENSURE_MSG(context, RunConv(&p, in + n * in_size, w, b, out + n * out_size, false),
                       "picotflm CONV_2D: the output overlaps input rows still to be read (memory plan)");
  }
  return kTfLiteOk;
}

// ------------------------------------------------------------------------------ DEPTHWISE_CONV_2D

// A scratch buffer for the input with its padding written out, so that every output is an interior
// one (border outputs cost several times more). The buffer lives only while the op runs; TFLM's
// planner places it beside the activations of that moment. Its size follows from the output's: the
// rows and columns the kernel's windows cover.
int PaddedH(const pk_conv_params& p) { return (p.out_h - 1) * p.stride_h + p.k_h; }
int PaddedW(const pk_conv_params& p) { return (p.out_w - 1) * p.stride_w + p.k_w; }

TfLiteStatus DepthwisePrepare(TfLiteContext* context, TfLiteNode* node) {
  const auto& params = *static_cast<const TfLiteDepthwiseConvParams*>(node->builtin_data);
  const TfLiteEvalTensor* input = tflite::micro::GetEvalInput(context, node, tflite::kDepthwiseConvInputTensor);
  const TfLiteEvalTensor* filter = tflite::micro::GetEvalInput(context, node, tflite::kDepthwiseConvWeightsTensor);
  const TfLiteEvalTensor* output = tflite::micro::GetEvalOutput(context, node, tflite::kDepthwiseConvOutputTensor);
  const TfLiteEvalTensor* bias = node->inputs->size == 3
                                     ? tflite::micro::GetEvalInput(context, node, tflite::kDepthwiseConvBiasTensor)
                                     : nullptr;
  TF_LITE_ENSURE(context, input != nullptr && filter != nullptr && output != nullptr);
  TF_LITE_ENSURE(context, input->dims->size == 4 && filter->dims->size == 4 && output->dims->size == 4);
  // What DepthwiseEval's fast path needs (it checks each again and refuses the rest with an error).
  const bool fast = input->type == kTfLiteInt8 && (filter->type == kTfLiteInt8 || filter->type == kTfLiteInt4) &&
                    (bias == nullptr || bias->type == kTfLiteInt32) && params.dilation_height_factor == 1 &&
                    params.dilation_width_factor == 1 && params.depth_multiplier == 1 &&
                    input->dims->data[3] == output->dims->data[3];
  pk_conv_params p;
  p.out_h = output->dims->data[1];
  p.out_w = output->dims->data[2];
  p.stride_h = params.stride_height;
  p.stride_w = params.stride_width;
  p.k_h = filter->dims->data[1];
  p.k_w = filter->dims->data[2];
  const int in_h = input->dims->data[1], in_w = input->dims->data[2], c = input->dims->data[3];
  const bool int8_3x3 = input->type == kTfLiteInt8 && p.k_h == 3 && p.k_w == 3 && params.dilation_height_factor == 1 &&
                        params.dilation_width_factor == 1 && params.depth_multiplier == 1 &&
                        input->dims->data[0] == 1 && PaddedH(p) >= in_h && PaddedW(p) >= in_w;
  TF_LITE_ENSURE_STATUS(
      PrepareConvData(context, node, tflite::DepthwiseConvPrepare, fast, static_cast<ConvData*>(node->user_data)));
  auto* d = static_cast<ConvData*>(node->user_data);
  const OpDataConv* data = Full(*d);
  const int pad_h = data ? data->padding.height : d->pad_h, pad_w = data ? data->padding.width : d->pad_w;
  const bool padded = pad_h > 0 || pad_w > 0 || PaddedH(p) > in_h || PaddedW(p) > in_w;
  if (int8_3x3 && padded) {
    int idx = -1;
    TF_LITE_ENSURE_STATUS(context->RequestScratchBufferInArena(context, PaddedH(p) * PaddedW(p) * c, &idx));
    TF_LITE_ENSURE(context, idx >= 0 && idx <= 32767);
    d->aux = static_cast<int16_t>(idx);
  }
  return kTfLiteOk;
}

TfLiteStatus DepthwiseEval(TfLiteContext* context, TfLiteNode* node) {
  const auto& params = *static_cast<const TfLiteDepthwiseConvParams*>(node->builtin_data);
  const ConvData& d = *static_cast<const ConvData*>(node->user_data);
  const OpDataConv* data = Full(d);
  const TfLiteEvalTensor* input = tflite::micro::GetEvalInput(context, node, tflite::kDepthwiseConvInputTensor);
  const TfLiteEvalTensor* filter = tflite::micro::GetEvalInput(context, node, tflite::kDepthwiseConvWeightsTensor);
  const TfLiteEvalTensor* bias = node->inputs->size == 3
                                     ? tflite::micro::GetEvalInput(context, node, tflite::kDepthwiseConvBiasTensor)
                                     : nullptr;
  TfLiteEvalTensor* output = tflite::micro::GetEvalOutput(context, node, tflite::kDepthwiseConvOutputTensor);
  TF_LITE_ENSURE_MSG(context, input->type == kTfLiteInt8, "picotflm DEPTHWISE_CONV_2D: only int8 activations");
  TF_LITE_ENSURE_MSG(context, filter->type == kTfLiteInt8 || filter->type == kTfLiteInt4,
                     "picotflm DEPTHWISE_CONV_2D: only int8 or int4 weights");
  TF_LITE_ENSURE_MSG(context, bias == nullptr || bias->type == kTfLiteInt32,
                     "picotflm DEPTHWISE_CONV_2D: int32 bias only");
  const int8_t* w = FilterInt8(context, filter, data ? data->filter_buffer_index : d.filter_buffer_index);
  const int32_t* b = bias ? tflite::micro::GetTensorData<int32_t>(bias) : nullptr;
  const int8_t* in = tflite::micro::GetTensorData<int8_t>(input);
  int8_t* out = tflite::micro::GetTensorData<int8_t>(output);

  const bool fast = params.dilation_height_factor == 1 && params.dilation_width_factor == 1 &&
                    params.depth_multiplier == 1 && input->dims->data[3] == output->dims->data[3];
  if (!fast) {
    TF_LITE_ENSURE_MSG(context, data != nullptr,
                       "picotflm DEPTHWISE_CONV_2D: the op's data was prepared for the fast path");
    TF_LITE_ENSURE_MSG(context, !Overlap(input, output),
                       "picotflm DEPTHWISE_CONV_2D: the plan put the output over the input of an op it cannot run in place");
    DepthwiseReference(params, *data, input, filter, bias, output, in, w, b, out);
    return kTfLiteOk;
  }
  pk_conv_params p = Params(input, filter, output, params.stride_height, params.stride_width, d);
  if (d.aux >= 0) {
    int8_t* padded = static_cast<int8_t*>(context->GetScratchBuffer(context, d.aux));
    const int ph = PaddedH(p), pw = PaddedW(p);
    pk_pad_s8(in, p.in_h, p.in_w, p.in_c, padded, ph, pw, p.pad_h, p.pad_w, static_cast<int8_t>(-p.input_offset));
    p.in_h = ph;
    p.in_w = pw;
    p.pad_h = 0;
    p.pad_w = 0;
    TF_LITE_ENSURE_MSG(context, RunConv(&p, padded, w, b, out, true),
                       "picotflm DEPTHWISE_CONV_2D: the output overlaps its padded input");
    return kTfLiteOk;
  }
  const int in_size = p.in_h * p.in_w * p.in_c, out_size = p.out_h * p.out_w * p.out_c;
  for (int n = 0; n < input->dims->data[0]; n++) {
    TF_LITE_ENSURE_MSG(context, RunConv(&p, in + n * in_size, w, b, out + n * out_size, true),
                       "picotflm DEPTHWISE_CONV_2D: the output overlaps input rows still to be read (memory plan)");
  }
  return kTfLiteOk;
}

// ------------------------------------------------------------------------------------------ MEAN

// What MEAN keeps in the arena for our fast path (an int8 mean over axes {1, 2}): 16 bytes instead of
// TFLM's 40-byte OpDataReduce (48 with the arena's alignment). `full`: TFLM's follows (FullMeanData),
// for every other mean, which TFLM's own Eval computes.
struct MeanData {
  int32_t multiplier;
  int16_t temp_buffer_idx;
  int8_t shift, input_zp, output_zp;
  bool full;
};
static_assert(sizeof(MeanData) <= 16, "MeanData is one 16-byte arena slot");

struct FullMeanData {
  MeanData head;  // head.full
  tflite::OpDataReduce reduce;
};

void* MeanInit(TfLiteContext* context, const char* buffer, size_t length) {
  void* d = context->AllocatePersistentBuffer(context, sizeof(MeanData));
  if (d != nullptr) memset(d, 0, sizeof(MeanData));
  return d;
}

// Whether MEAN's input and axes are what MeanEval's fast path computes.
bool MeanFast(TfLiteContext* context, TfLiteNode* node) {
  const TfLiteEvalTensor* input = tflite::micro::GetEvalInput(context, node, 0);
  const TfLiteEvalTensor* axis = tflite::micro::GetEvalInput(context, node, 1);
  if (input == nullptr || axis == nullptr || axis->data.data == nullptr || axis->type != kTfLiteInt32) return false;
  if (input->type != kTfLiteInt8 || input->dims->size != 4 || tflite::micro::GetTensorShape(axis).FlatSize() != 2)
    return false;
  const int32_t* ax = tflite::micro::GetTensorData<int32_t>(axis);
  const int a0 = ax[0] < 0 ? ax[0] + 4 : ax[0], a1 = ax[1] < 0 ? ax[1] + 4 : ax[1];
  return (a0 == 1 && a1 == 2) || (a0 == 2 && a1 == 1);
}

// TFLM's Prepare on a temporary OpDataReduce, then MeanData alone for the fast path, else TFLM's kept.
TfLiteStatus MeanPrepare(TfLiteContext* context, TfLiteNode* node) {
  auto* d = static_cast<MeanData*>(node->user_data);
  TF_LITE_ENSURE(context, d != nullptr);
  tflite::MicroContext* micro = tflite::GetMicroContext(context);
  auto* temp = reinterpret_cast<tflite::OpDataReduce*>(
      micro->AllocateTempBuffer(sizeof(tflite::OpDataReduce), alignof(tflite::OpDataReduce)));
  TF_LITE_ENSURE(context, temp != nullptr);
  memset(temp, 0, sizeof(tflite::OpDataReduce));
  TfLiteStatus status = tflite::PrepareMeanOrSumHelper(context, node, temp);
  const bool fits = temp->shift >= -128 && temp->shift <= 127 && temp->input_zp >= -128 && temp->input_zp <= 127 &&
                    temp->output_zp >= -128 && temp->output_zp <= 127 && temp->temp_buffer_idx >= 0 &&
                    temp->temp_buffer_idx <= 32767;
  if (status == kTfLiteOk && fits && MeanFast(context, node)) {
    d->multiplier = temp->multiplier;
    d->temp_buffer_idx = static_cast<int16_t>(temp->temp_buffer_idx);
    d->shift = static_cast<int8_t>(temp->shift);
    d->input_zp = static_cast<int8_t>(temp->input_zp);
    d->output_zp = static_cast<int8_t>(temp->output_zp);
    d->full = false;
  } else if (status == kTfLiteOk) {
    auto* full = static_cast<FullMeanData*>(PersistentBeside(context, sizeof(FullMeanData), temp, sizeof(*temp)));
    if (full == nullptr) {
      status = kTfLiteError;
    } else {
      full->head = MeanData();
      full->head.full = true;
      full->reduce = *temp;
      node->user_data = full;  // the Init MeanData (16 bytes) stays unused
    }
  }
  micro->DeallocateTempBuffer(reinterpret_cast<uint8_t*>(temp));
  return status;
}

// Mean over axes {1, 2} of an int8 NHWC tensor: the sums in one pass per channel, then TFLM's own
// rescaling (reference_ops::QuantizedMeanOrSum), step for step.
TfLiteStatus MeanEval(TfLiteContext* context, TfLiteNode* node) {
  const MeanData& d = *static_cast<const MeanData*>(node->user_data);
  if (d.full) return tflite::EvalMeanHelper(context, node, &reinterpret_cast<FullMeanData*>(node->user_data)->reduce);
  const TfLiteEvalTensor* input = tflite::micro::GetEvalInput(context, node, 0);
  TfLiteEvalTensor* output = tflite::micro::GetEvalOutput(context, node, 0);
  const MeanData* op_data = &d;

  const int batches = input->dims->data[0], hw = input->dims->data[1] * input->dims->data[2];
  const int channels = input->dims->data[3];
  auto* sums = static_cast<int32_t*>(context->GetScratchBuffer(context, op_data->temp_buffer_idx));
  const int8_t* in = tflite::micro::GetTensorData<int8_t>(input);
  int8_t* out = tflite::micro::GetTensorData<int8_t>(output);
  if (hw == 0) {
    for (int i = 0; i < batches * channels; i++) out[i] = 0;
    return kTfLiteOk;
  }
  // reference_ops::QuantizedMeanOrSum: fold 1/num_elements into the multiplier.
  const int64_t num_elements = hw;
  int shift = 63 - tflite::CountLeadingZeros(static_cast<uint64_t>(num_elements));
  shift = shift < 32 ? shift : 32;
  shift = shift < 31 + op_data->shift ? shift : 31 + op_data->shift;
  const int32_t multiplier =
      static_cast<int32_t>((static_cast<int64_t>(op_data->multiplier) << shift) / num_elements);
  const int out_shift = op_data->shift - shift;
  for (int n = 0; n < batches; n++) {
    pk_sum_hw_s8(in + n * hw * channels, hw, channels, sums);
    for (int c = 0; c < channels; c++) {
      const int32_t shifted = static_cast<int32_t>(sums[c] - op_data->input_zp * num_elements);
      int32_t v = tflite::MultiplyByQuantizedMultiplier(shifted, multiplier, out_shift) + op_data->output_zp;
      v = v < -128 ? -128 : (v > 127 ? 127 : v);
      out[n * channels + c] = static_cast<int8_t>(v);
    }
  }
  return kTfLiteOk;
}

}  // namespace

TFLMRegistration Register_CONV_2D() {
  return tflite::micro::RegisterOp(ConvDataInit, ConvPrepare, ConvEval);
}

TFLMRegistration Register_DEPTHWISE_CONV_2D() {
  return tflite::micro::RegisterOp(ConvDataInit, DepthwisePrepare, DepthwiseEval);
}

TFLMRegistration Register_MEAN() {
  return tflite::micro::RegisterOp(MeanInit, MeanPrepare, MeanEval);
}

namespace {
// The interpreter looks up the op's parser by the registration's builtin_code, which TFLM's
// resolver sets when an op is added: ours carry it from the start.
TFLMRegistration WithCode(TFLMRegistration r, tflite::BuiltinOperator op) {
  r.builtin_code = op;
  return r;
}

// Namespace-scope objects, not function-local statics: a guarded local static pulls libstdc++'s
// __cxa_guard_acquire, and with it the unwinder (4 KB copied to RAM) and its malloc'ed pool.
const TFLMRegistration conv = WithCode(Register_CONV_2D(), tflite::BuiltinOperator_CONV_2D);
const TFLMRegistration depthwise = WithCode(Register_DEPTHWISE_CONV_2D(), tflite::BuiltinOperator_DEPTHWISE_CONV_2D);
const TFLMRegistration mean = WithCode(Register_MEAN(), tflite::BuiltinOperator_MEAN);
}  // namespace

void UseQuantTables(const QuantTable* tables, int count, QuantCacheSlot* cache) {
  g_tables = tables;
  g_table_count = count;
  g_matched = 0;
  g_missed = 0;
  g_wide = 0;
  g_cache = cache;
  for (int i = 0; i < kMaxCheckedTables / 32; i++) g_lo_checked[i] = g_lo_equal[i] = 0;
  if (cache != nullptr) {
    for (int i = 0; i < count; i++) {
      cache[i].valid = false;
      cache[i].wide_filter = nullptr;
    }
  }
}

int QuantCacheHits() { return g_cache_hits; }

int ThresholdTablesVerified() {
  int n = 0;
  for (int i = 0; i < g_table_count && i < kMaxCheckedTables; i++) n += Bit(g_lo_equal, i);
  return n;
}

int ThresholdTablesRejected() {
  int n = 0;
  for (int i = 0; i < g_table_count && i < kMaxCheckedTables; i++) n += Bit(g_lo_checked, i) && !Bit(g_lo_equal, i);
  return n;
}

void ResetQuantTableCounts() {
  g_matched = 0;
  g_missed = 0;
  g_wide = 0;
}

int WideTablesMatched() { return g_wide; }

int QuantTablesMatched() { return g_matched; }

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
int QuantTablesMissed() { return g_missed; }

TfLiteStatus PlannedMemoryPlanner::AddBuffer(int size, int first_time_used, int last_time_used) {
  for (int i = 0; i < entries_ && i < 32; i++) {
    const int32_t* e = plan_ + 4 * i;
    if ((used_ & (1u << i)) == 0 && e[0] == size && e[1] == first_time_used && e[2] == last_time_used) {
      used_ |= 1u << i;
      matched_++;
      return GreedyMemoryPlanner::AddBuffer(size, first_time_used, last_time_used, e[3]);
    }
  }
  return GreedyMemoryPlanner::AddBuffer(size, first_time_used, last_time_used);
}

const TFLMRegistration* FindKernel(tflite::BuiltinOperator op) {
  switch (op) {
    case tflite::BuiltinOperator_CONV_2D:
      return &conv;
    case tflite::BuiltinOperator_DEPTHWISE_CONV_2D:
      return &depthwise;
    case tflite::BuiltinOperator_MEAN:
      return &mean;
    default:
      return nullptr;
  }
}

}  // namespace picotflm

// ----------------------------------------------- PopulateConvolutionQuantizationParams, remembered
// Linked with --wrap (firmware/CMakeLists.txt): TFLM's conv and depthwise Prepare call this instead.
#define PICOTFLM_POPULATE _ZN6tflite37PopulateConvolutionQuantizationParamsEP13TfLiteContextPK12TfLiteTensorS4_S4_PS2_RK21TfLiteFusedActivationPlPiS9_S9_S9_S9_i
#define PICOTFLM_CAT_(a, b) a##b
#define PICOTFLM_CAT(a, b) PICOTFLM_CAT_(a, b)

extern "C" TfLiteStatus PICOTFLM_CAT(__real_, PICOTFLM_POPULATE)(
    TfLiteContext* context, const TfLiteTensor* input, const TfLiteTensor* filter, const TfLiteTensor* bias,
    TfLiteTensor* output, const TfLiteFusedActivation& activation, int32_t* multiplier, int* shift,
    int32_t* output_activation_min, int32_t* output_activation_max, int32_t* per_channel_multiplier,
    int32_t* per_channel_shift, int num_channels);

namespace {

bool InFlash(const void* p) { return (reinterpret_cast<uintptr_t>(p) >> 24) == 0x10; }  // XIP flash

uint32_t FloatBits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

}  // namespace

extern "C" TfLiteStatus PICOTFLM_CAT(__wrap_, PICOTFLM_POPULATE)(
    TfLiteContext* context, const TfLiteTensor* input, const TfLiteTensor* filter, const TfLiteTensor* bias,
    TfLiteTensor* output, const TfLiteFusedActivation& activation, int32_t* multiplier, int* shift,
    int32_t* output_activation_min, int32_t* output_activation_max, int32_t* per_channel_multiplier,
    int32_t* per_channel_shift, int num_channels) {
  using picotflm::g_cache;
  using picotflm::g_pending;
  using picotflm::g_table_count;
  using picotflm::g_tables;
  const auto* affine = filter->quantization.type == kTfLiteAffineQuantization
                           ? static_cast<const TfLiteAffineQuantization*>(filter->quantization.params)
                           : nullptr;
  // The key: everything the computation reads. Only constants in flash (the filter's data and its
  // scales, which TFLM points at inside the flatbuffer) make a key; anything else is computed as usual.
  const bool cacheable = g_cache != nullptr && g_pending != nullptr && affine != nullptr && affine->scale != nullptr &&
                         InFlash(filter->data.raw) && InFlash(affine->scale);
  uint32_t key[12] = {0};
  if (cacheable) {
    key[0] = reinterpret_cast<uintptr_t>(filter->data.raw);
    key[1] = reinterpret_cast<uintptr_t>(affine->scale);
    key[2] = static_cast<uint32_t>(affine->scale->size);
    key[3] = bias != nullptr ? reinterpret_cast<uintptr_t>(bias->data.raw) : 0;
    key[4] = static_cast<uint32_t>(input->type);
    key[5] = FloatBits(input->params.scale);
    key[6] = static_cast<uint32_t>(input->params.zero_point);
    key[7] = static_cast<uint32_t>(output->type);
    key[8] = FloatBits(output->params.scale);
    key[9] = static_cast<uint32_t>(output->params.zero_point);
    key[10] = static_cast<uint32_t>(activation);
    key[11] = static_cast<uint32_t>(num_channels);
    for (int i = 0; i < g_table_count; i++) {
      const picotflm::QuantCacheSlot& slot = g_cache[i];
      if (!slot.valid || g_tables[i].channels != num_channels || memcmp(slot.key, key, sizeof key) != 0) continue;
      for (int c = 0; c < num_channels; c++) {
        per_channel_multiplier[c] = g_tables[i].mult[c];
        per_channel_shift[c] = g_tables[i].shift[c];
      }
      *multiplier = slot.out_mult;
      *shift = slot.out_shift;
      *output_activation_min = slot.act_min;
      *output_activation_max = slot.act_max;
      picotflm::g_cache_hits++;
      return kTfLiteOk;
    }
  }
  const TfLiteStatus status = PICOTFLM_CAT(__real_, PICOTFLM_POPULATE)(
      context, input, filter, bias, output, activation, multiplier, shift, output_activation_min,
      output_activation_max, per_channel_multiplier, per_channel_shift, num_channels);
  if (cacheable && status == kTfLiteOk) {
    memcpy(g_pending->slot.key, key, sizeof key);
    g_pending->slot.out_mult = *multiplier;
    g_pending->slot.out_shift = *shift;
    g_pending->slot.act_min = *output_activation_min;
    g_pending->slot.act_max = *output_activation_max;
    g_pending->valid = true;
  }
  return status;
}
