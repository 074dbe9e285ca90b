// `layer <op> <offset> <len> <crc32>`: one op's output for the frame the host loaded, read in chunks.
//
// The request checks the frame's CRC-32 (as `infer` does), invokes the model on it once and, when op
// <op> ends, copies up to PTF_LAYER_CHUNK bytes of that op's output tensor (its first output), from
// <offset>, into one static chunk buffer. It is copied at that moment because the in-place memory plan
// lets later ops write over it. A profiler of its own (a Begin/End count per op, as TFLM calls a
// profiler around every node) stands in for the `profile` one during that Invoke only.
//
// RAM: the chunk buffer (PTF_LAYER_CHUNK bytes) and the capture's few words, nothing per tensor.
// Like `infer`, each request needs the frame loaded again (TFLM overwrites the input tensor during
// Invoke), except with several variants, where the frame has a buffer of its own.
#ifndef PICOTFLM_APP_LAYERS_H_
#define PICOTFLM_APP_LAYERS_H_

#include "protocol.h"

namespace app {

void cmd_layer(const ptf_request_t& r);

}  // namespace app

#endif  // PICOTFLM_APP_LAYERS_H_
