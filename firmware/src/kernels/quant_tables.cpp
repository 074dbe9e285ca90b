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
int g_groups = 0;
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
  BeginPerChannelCapture(context);
  const TfLiteStatus status = prepare(context, node);
  EndPerChannelCapture(context);
  TfLiteStatus result = status;
  const int channels = CapturedChannels(data->per_channel_output_multiplier, data->per_channel_output_shift);
  if (status == kTfLiteOk && channels >= 0) {
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
      result = KeepCapturedCopies(context, &data->per_channel_output_multiplier, &data->per_channel_output_shift);
    }
  } else if (status == kTfLiteOk && CapturedCount() > 0) {
    MicroPrintf("picotflm: unexpected per-channel allocations in Prepare");
    result = kTfLiteError;
  }
  ReleaseCapture(context);
  g_pending = nullptr;
  return result;
}

void UseQuantTables(const QuantTable* tables, int count, QuantCacheSlot* cache) {
  g_tables = tables;
  g_table_count = count;
  g_matched = 0;
  g_missed = 0;
  g_wide = 0;
  g_groups = 0;
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
  g_groups = 0;
}

int WideTablesMatched() { return g_wide; }

int GroupTablesMatched() { return g_groups; }

int QuantTablesMatched() { return g_matched; }

int QuantTablesMissed() { return g_missed; }

}  // namespace picotflm
