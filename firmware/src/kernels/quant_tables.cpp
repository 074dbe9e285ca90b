// See quant_tables.h: the host tables, matched against TFLM's own Prepare results.
#include "quant_tables.h"

#include "persistent.h"
#include "pk_core.h"
#include "quant_cache.h"
#include "tensorflow/lite/micro/micro_context.h"
#include "tensorflow/lite/micro/micro_log.h"

namespace picotflm {

using tflite::OpDataConv;

const QuantTable* g_tables = nullptr;
int g_table_count = 0;
int g_wide = 0;
uint32_t g_lo_equal[kMaxCheckedTables / 32];

namespace {

int g_matched = 0;
int g_missed = 0;

// ------------------------------------------------------------------ host-computed ReLU thresholds

uint32_t g_lo_checked[kMaxCheckedTables / 32];  // bit i: table i's thresholds were compared (g_lo_equal: and equal)

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

// ------------------------------------------------------------- per-channel tables kept out of the arena

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

}  // namespace

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

int QuantTablesMissed() { return g_missed; }

}  // namespace picotflm
