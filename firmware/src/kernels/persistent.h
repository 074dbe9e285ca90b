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

}  // namespace picotflm

#endif  // PICOTFLM_PERSISTENT_H_
