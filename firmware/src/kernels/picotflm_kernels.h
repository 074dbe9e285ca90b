// picotflm's own TFLM kernels for the Cortex-M0+ (RP2040): CONV_2D, DEPTHWISE_CONV_2D, MEAN,
// FULLY_CONNECTED and SOFTMAX.
//
// The generated op resolver returns them in place of pico-tflmicro's (CMSIS-NN) kernels; TFLM's
// sources are not touched. Every output is bit-exact with the stock kernels: the same integer arithmetic, the same
// requantization (CMSIS-NN's arm_nn_requantize, TFLM's MultiplyByQuantizedMultiplier for MEAN),
// computed with 32-bit operations where the stock code calls a 64-bit multiply routine.
// FULLY_CONNECTED and SOFTMAX (int8) are TFLM's reference arithmetic (pk_fc_softmax.c) with one
// 16-byte slot of op data each; their other cases run pico-tflmicro's kernels.
// Cases the fast paths do not cover (dilation, grouped convolution, depth multiplier > 1, int16)
// run TFLM's reference kernels.
//
// One file per concern: conv.cpp, depthwise.cpp, mean.cpp, fully_connected.cpp and softmax.cpp (the ops), conv_data.cpp (what a conv
// keeps in the arena), conv_run.cpp (one core, both cores, or in place), quant_tables.cpp (the host's
// per-channel tables and their ReLU thresholds), quant_cache.cpp (TFLM's Prepare results remembered),
// persistent.cpp, planner.cpp (PlannedMemoryPlanner), registry.cpp (FindKernel); the arithmetic in
// pk_core.c and pk_dot_m0.S, core 1 in pk_multicore.c.
#ifndef PICOTFLM_KERNELS_H_
#define PICOTFLM_KERNELS_H_

#include "tensorflow/lite/micro/compatibility.h"
#include "tensorflow/lite/micro/memory_planner/greedy_memory_planner.h"
#include "tensorflow/lite/micro/micro_common.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace picotflm {

// Per-channel requantization of one convolution, computed by the host (the generated op resolver
// passes them in). A conv or depthwise kernel whose Prepare results equal a table points TFLM's
// per-channel arrays at it (flash) instead of keeping 8 bytes per channel in the tensor arena.
// With each channel's ReLU threshold (pk_lo_threshold_of) for the output offset and activation range
// the host expects: checked once per boot against the firmware's own computation, then the kernels
// read it instead of computing it at every invoke (nullptr: not given).
// With a CONV_2D's weights as the asm kernel reads them (pk_conv_params::wx: int32, interleaved by
// channel in groups of four, in flash instead of a RAM buffer re-filled at every invoke): used by the
// op whose weights they equal, compared at its Prepare (nullptr: not given).
// With a CONV_2D's per-group setup (pk_group_record's records: folded biases and the spans'
// requantization, PK_GROUP_RECORD words per group of four channels): used by an op only when its
// Prepare computed the same records from its own weights, bias and quantization (nullptr: not given).
struct QuantTable {
  int channels;
  const int32_t* mult;
  const int32_t* shift;
  const int32_t* lo_at;
  int32_t out_offset, act_min, act_max;
  const int32_t* wx;
  const int32_t* wx8;  // with wx: the same weights as pairs of groups read them (pk_conv_params::wx8), or nullptr
  const int32_t* groups;
};
// What TFLM's PopulateConvolutionQuantizationParams computed for one convolution, kept so that the
// next Prepare of the same op (a switching firmware sets its models up again at every switch) skips
// it: its soft-float double arithmetic is most of a setup. One slot per QuantTable, filled only once
// that table was confirmed equal to TFLM's result; looked up by everything the computation reads
// (tensors' quantization, types, activation, channels; the filter's data and scales in flash).
struct QuantCacheSlot {
  uint32_t key[12];
  int32_t out_mult, out_shift, act_min, act_max;
  bool valid;
  // The filter data (in flash) whose weights the table's expanded weights were found equal to:
  // the next Prepare of that op takes the table without comparing them again.
  const void* wide_filter;
};
// `cache`: `count` slots, or nullptr (a firmware with one model sets up once: no cache).
void UseQuantTables(const QuantTable* tables, int count, QuantCacheSlot* cache = nullptr);
// Per-channel requantization of a FULLY_CONNECTED, computed by the host (pipeline/codegen/fc_tables.py):
// an op whose Prepare results equal a table keeps pointers to it (flash) instead of 8 bytes per
// channel in the tensor arena.
struct FcTable {
  int channels;
  const int32_t* mult;
  const int32_t* shift;
};
void UseFcTables(const FcTable* tables, int count);
// FULLY_CONNECTED Prepares since boot that found their table.
int FcTablesMatched();
// Prepares answered from the cache since boot.
int QuantCacheHits();
// Convolutions whose Prepare found its table (since the last UseQuantTables), and those that did not.
void ResetQuantTableCounts();
int QuantTablesMatched();
int QuantTablesMissed();
// Tables whose ReLU thresholds were checked equal to the firmware's own, and those found different.
int ThresholdTablesVerified();
int ThresholdTablesRejected();
// Convolutions whose Prepare found a table holding their weights expanded (since the last
// UseQuantTables or ResetQuantTableCounts).
int WideTablesMatched();
// Convolutions whose Prepare found the host's group records equal to its own (same counts' reset).
int GroupTablesMatched();

// Both cores (the board image, PICOTFLM_CORES == 2): a conv or depthwise conv of at least 4,096 MACs
// (and 256 per output channel) computes the upper half of its output rows on core 0 and the lower
// half on core 1 (pk_split, pk_multicore.h), bit-identical with one core. The emulator image never
// splits.
// CoresUsed: 2 once an op has run on both cores since boot, else 1. SplitOps: how many op runs were
// split since boot. Core1Jobs: jobs core 1 ran since boot, ours and pico-tflmicro's matrix products.
// Core1StackPeak / Core1StackSize: bytes of core 1's stack used at most / reserved (0 / 0 when core 1
// never ran, and in the emulator image).
// Op runs computed in place (output over its own input, PlannedMemoryPlanner) since boot.
int InplaceOps();
int CoresUsed();
int SplitOps();
uint32_t Core1Jobs();
uint32_t Core1StackPeak();
uint32_t Core1StackSize();

// Our registration for a builtin operator, or nullptr when TFLM's own kernel should run. The
// generated op resolver (op_resolver.h) asks this first.
const TFLMRegistration* FindKernel(tflite::BuiltinOperator op);

TFLMRegistration Register_CONV_2D();
TFLMRegistration Register_DEPTHWISE_CONV_2D();
TFLMRegistration Register_MEAN();
TFLMRegistration Register_FULLY_CONNECTED();
TFLMRegistration Register_SOFTMAX();

// TFLM's greedy planner, told where to put buffers: pipeline/codegen/memplan.py places convolutions'
// and depthwise convolutions' outputs `lead` bytes below their own input or its padded copy (the
// kernels then write them in bands of rows that only overwrite input rows already read), and every
// other buffer it can name where its layout needs it (at most kMaxPlanEntries). `plan` holds {bytes, first, last, offset} per buffer: TFLM's
// 16-byte aligned size and allocation scopes of the buffer (micro_allocation_info.cpp), and its
// offset from the start of the planned area. A buffer TFLM adds with that size and lifetime gets
// the offset (each entry once); every other buffer is placed by the greedy planner around them. A
// plan that matches only in part creates no overlap (the greedy planner avoids placed buffers).
constexpr int kMaxPlanEntries = 128;
class PlannedMemoryPlanner : public tflite::GreedyMemoryPlanner {
 public:
  void SetPlan(const int32_t* plan, int entries) {
    plan_ = plan;
    entries_ = entries;
  }
  // Entries of the plan that TFLM's buffers matched in the last plan.
  int Matched() const { return matched_; }
  TfLiteStatus Init(unsigned char* scratch_buffer, int scratch_buffer_size) override {
    for (uint32_t& u : used_) u = 0;
    matched_ = 0;
    return GreedyMemoryPlanner::Init(scratch_buffer, scratch_buffer_size);
  }
  using GreedyMemoryPlanner::AddBuffer;
  TfLiteStatus AddBuffer(int size, int first_time_used, int last_time_used) override;

 private:
  const int32_t* plan_ = nullptr;
  int entries_ = 0;
  uint32_t used_[kMaxPlanEntries / 32] = {};
  int matched_ = 0;
  TF_LITE_REMOVE_VIRTUAL_DELETE  // as its base: never deleted, no heap
};

}  // namespace picotflm

#endif  // PICOTFLM_KERNELS_H_
