// See persistent.h.
#include "persistent.h"

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

}  // namespace picotflm
