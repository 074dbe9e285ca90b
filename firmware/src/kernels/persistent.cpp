// See persistent.h.
#include "persistent.h"

#include "tensorflow/lite/micro/micro_context.h"
#include "tensorflow/lite/micro/micro_log.h"

namespace picotflm {

bool Reaches(const void* p, uint8_t* const* temp, const size_t* bytes, int n) {
  for (int i = 0; i < n; i++)
    if (temp[i] != nullptr && static_cast<const uint8_t*>(p) < temp[i] + bytes[i]) return true;
  return false;
}

void* PersistentBeside(TfLiteContext* context, size_t bytes, const void* temp, size_t temp_bytes) {
  void* p = context->AllocatePersistentBuffer(context, bytes);
  uint8_t* const temps[1] = {static_cast<uint8_t*>(const_cast<void*>(temp))};
  const size_t sizes[1] = {temp_bytes};
  if (p != nullptr && !Reaches(p, temps, sizes, 1)) return p;
  MicroPrintf("picotflm: the arena is too small to keep the op's data");
  return nullptr;
}

namespace {

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

}  // namespace

void BeginPerChannelCapture(TfLiteContext* context) {
  g_capture = PerChannelCapture();
  g_capture.persistent = context->AllocatePersistentBuffer;
  context->AllocatePersistentBuffer = CapturePersistent;
}

void EndPerChannelCapture(TfLiteContext* context) { context->AllocatePersistentBuffer = g_capture.persistent; }

int CapturedCount() { return g_capture.count; }

int CapturedChannels(const int32_t* mult, const int32_t* shift) {
  if (g_capture.count != 2 || g_capture.bytes[0] != g_capture.bytes[1] ||
      mult != reinterpret_cast<int32_t*>(g_capture.temp[0]) || shift != reinterpret_cast<int32_t*>(g_capture.temp[1]))
    return -1;
  return static_cast<int>(g_capture.bytes[0] / sizeof(int32_t));
}

TfLiteStatus KeepCapturedCopies(TfLiteContext* context, int32_t** mult, int32_t** shift) {
  int32_t** out[2] = {mult, shift};
  for (int i = 0; i < 2; i++) {
    auto* keep = static_cast<int32_t*>(g_capture.persistent(context, g_capture.bytes[i]));
    if (keep == nullptr || Reaches(keep, g_capture.temp, g_capture.bytes, 2)) {
      MicroPrintf("picotflm: the arena is too small to keep the per-channel arrays");
      return kTfLiteError;
    }
    const auto* from = reinterpret_cast<const int32_t*>(g_capture.temp[i]);
    for (size_t c = 0; c < g_capture.bytes[i] / sizeof(int32_t); c++) keep[c] = from[c];
    *out[i] = keep;
  }
  return kTfLiteOk;
}

void ReleaseCapture(TfLiteContext* context) {
  tflite::MicroContext* micro = tflite::GetMicroContext(context);
  for (int i = g_capture.count - 1; i >= 0; i--) micro->DeallocateTempBuffer(g_capture.temp[i]);
  g_capture = PerChannelCapture();
}

}  // namespace picotflm
