// Persistent arena memory beside temporary buffers that are still to be copied from. TFLM checks a
// persistent allocation against the head of the arena only, not against the temporary buffers above
// it: an allocation that reaches into one would be overwritten by its own copy.
#ifndef PICOTFLM_PERSISTENT_H_
#define PICOTFLM_PERSISTENT_H_

#include <stddef.h>
#include <stdint.h>

#include "tensorflow/lite/c/common.h"

namespace picotflm {

// Whether the persistent buffer at `p` reaches into any of the `n` temporary buffers (which sit below
// TFLM's persistent tail, at the head).
bool Reaches(const void* p, uint8_t* const* temp, const size_t* bytes, int n);

// A persistent buffer of `bytes` clear of the temporary buffer `temp` still to be copied from, or
// nullptr (with the reason in TFLM's log) when the arena has no such room.
void* PersistentBeside(TfLiteContext* context, size_t bytes, const void* temp, size_t temp_bytes);

// TFLM's Prepare of a convolution or a fully connected op allocates two persistent per-channel arrays
// (output multipliers and shifts). Between BeginPerChannelCapture and EndPerChannelCapture the first
// two persistent allocations come from temporary memory instead, so that afterwards the op points at
// a host table in flash with the same content, or keeps copies (KeepCapturedCopies) as TFLM would.
// ReleaseCapture frees the temporary buffers. One capture at a time (Prepare runs on core 0 only).
void BeginPerChannelCapture(TfLiteContext* context);
void EndPerChannelCapture(TfLiteContext* context);
// How many allocations were captured.
int CapturedCount();
// The channel count when `mult` and `shift` are the two captured arrays (of equal size), else -1.
int CapturedChannels(const int32_t* mult, const int32_t* shift);
// The two captured arrays copied to persistent memory clear of the temporary buffers, written to
// `*mult` and `*shift`; kTfLiteError (with the reason in TFLM's log) when the arena has no room.
TfLiteStatus KeepCapturedCopies(TfLiteContext* context, int32_t** mult, int32_t** shift);
void ReleaseCapture(TfLiteContext* context);

}  // namespace picotflm

#endif  // PICOTFLM_PERSISTENT_H_
