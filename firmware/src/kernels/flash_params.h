// An operator's builtin parameters (TfLiteConvParams and the like) from flash instead of the arena.
// TFLM's parser fills a struct on the stack here; when the host wrote an equal one into the
// generated op resolver's tables (pipeline/codegen/builtin_params.py), the node points at that one
// and the arena keeps nothing for it; else the struct is copied into the arena, as TFLM does.
#ifndef PICOTFLM_FLASH_PARAMS_H_
#define PICOTFLM_FLASH_PARAMS_H_

#include <stddef.h>
#include <string.h>

#include "tensorflow/lite/core/api/flatbuffer_conversions.h"
#include "tensorflow/lite/micro/tflite_bridge/flatbuffer_conversions_bridge.h"

namespace picotflm {

// Builtin parameters taken from flash, and copied into the arena, since the last ResetFlashParams.
int FlashParamsUsed();
int FlashParamsCopied();
void ResetFlashParams();
void CountFlashParams(bool used);

// A BuiltinDataAllocator over one zeroed buffer on the caller's stack: TFLM's parser allocates its
// struct (one) there.
class StackParamsAllocator : public tflite::BuiltinDataAllocator {
 public:
  StackParamsAllocator(void* buffer, size_t size) : buffer_(buffer), size_(size) { memset(buffer, 0, size); }
  void* Allocate(size_t size, size_t) override {
    if (size > size_ || used_) return nullptr;
    used_ = true;
    return buffer_;
  }
  void Deallocate(void*) override {}

 private:
  void* buffer_;
  size_t size_;
  bool used_ = false;
};

// TFLM's `parse` of op, then the equal entry of table[0..n) (bytes compared: both the parser's
// struct and the table's are zeroed before their fields are set), else an arena copy.
template <typename T>
TfLiteStatus ParseFromFlash(tflite::TfLiteBridgeBuiltinParseFunction parse, const T* table, size_t n,
                            const tflite::Operator* op, tflite::ErrorReporter* reporter,
                            tflite::BuiltinDataAllocator* arena, void** builtin_data) {
  alignas(T) unsigned char parsed[sizeof(T)];
  StackParamsAllocator stack(parsed, sizeof(parsed));
  void* out = nullptr;
  TF_LITE_ENSURE_STATUS(parse(op, reporter, &stack, &out));
  if (out != parsed) return kTfLiteError;
  for (size_t i = 0; i < n; i++) {
    if (memcmp(&table[i], parsed, sizeof(T)) == 0) {
      *builtin_data = const_cast<T*>(&table[i]);  // read only: no kernel writes its builtin data
      CountFlashParams(true);
      return kTfLiteOk;
    }
  }
  void* copy = arena->Allocate(sizeof(T), alignof(T));
  if (copy == nullptr) return kTfLiteError;
  memcpy(copy, parsed, sizeof(T));
  *builtin_data = copy;
  CountFlashParams(false);
  return kTfLiteOk;
}

}  // namespace picotflm

#endif  // PICOTFLM_FLASH_PARAMS_H_
