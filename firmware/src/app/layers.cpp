// See layers.h.
#include "app/layers.h"

#include <stdio.h>
#include <string.h>

#include "app/commands.h"
#include "app/profile.h"
#include "app/reply.h"
#include "app/setup.h"
#include "app/switching.h"
#include "crc32.h"
#include "model_config.h"
#include "model_data.h"
#include "tensorflow/lite/micro/memory_helpers.h"
#include "tensorflow/lite/micro/micro_profiler_interface.h"
#include "tensorflow/lite/schema/schema_generated.h"

namespace app {
namespace {

// TFLM keeps the interpreter's TfLiteContext behind a protected accessor. A pointer to that member
// function, named through this subclass, reads it from the interpreter as it is (no subclass object is
// ever made). The context gives the eval tensors (GetEvalTensor) and holds the op-level profiler that
// TFLM's graph calls around every node.
struct ContextOf : tflite::MicroInterpreter {
  static TfLiteContext* of(tflite::MicroInterpreter* interpreter) {
    const TfLiteContext& (tflite::MicroInterpreter::*get)() const = &ContextOf::context;
    return const_cast<TfLiteContext*>(&(interpreter->*get)());
  }
};

alignas(4) uint8_t g_chunk[PTF_LAYER_CHUNK];

// Counts the top-level Begin/End pairs of one Invoke (one per op, in execution order; a nested event,
// such as a kernel's own, belongs to its op) and copies the chunk when op `target` ends.
class LayerCapture : public tflite::MicroProfilerInterface {
 public:
  uint32_t target = 0;
  const uint8_t* src = nullptr;  // the target op's output bytes from the requested offset
  uint32_t len = 0;
  uint32_t next = 0;  // ops begun so far
  uint32_t depth = 0;
  uint32_t current = 0;
  const char* tag = nullptr;
  bool captured = false;

  void Arm(uint32_t op, const uint8_t* from, uint32_t n) {
    target = op;
    src = from;
    len = n;
    next = depth = current = 0;
    tag = nullptr;
    captured = false;
  }
  uint32_t BeginEvent(const char* t) override {
    if (depth++ == 0) {
      current = next++;
      if (current == target) tag = t;
    }
    return 0;
  }
  void EndEvent(uint32_t) override {
    if (depth == 0 || --depth != 0 || current != target) return;
    memcpy(g_chunk, src, len);
    captured = true;
  }
};

LayerCapture g_capture;

// Error `range` with a formatted message: its buffer lives in this frame, not in cmd_layer's during Invoke.
__attribute__((noinline)) void range_error(const char* format, unsigned a, unsigned b, unsigned c = 0) {
  char msg[96];
  snprintf(msg, sizeof msg, format, a, b, c);
  send_error("range", msg);
}

}  // namespace

__attribute__((noinline)) void cmd_layer(const ptf_request_t& r) {
  const tflite::SubGraph* sg = tflite::GetModel(g_picotflm_variants[g_variant].data)->subgraphs()->Get(0);
  const uint32_t ops = sg->operators() ? sg->operators()->size() : 0;
  if (r.n >= ops) {
    return range_error("op index %u is past the model's %u ops (0 to %u)", (unsigned)r.n, (unsigned)ops,
                       (unsigned)(ops ? ops - 1 : 0));
  }
  const tflite::Operator* op = sg->operators()->Get(r.n);
  if (op->outputs() == nullptr || op->outputs()->size() == 0 || op->outputs()->Get(0) < 0) {
    return send_error("range", "that op has no output tensor");
  }
  const int tensor_index = op->outputs()->Get(0);
  TfLiteContext* ctx = ContextOf::of(g_interpreter);
  const TfLiteEvalTensor* t = ctx->GetEvalTensor(ctx, tensor_index);
  size_t size = 0;
  if (t == nullptr || t->data.raw == nullptr || tflite::TfLiteEvalTensorByteLength(t, &size) != kTfLiteOk) {
    return send_error("invoke", "the op's output tensor has no data in the arena");
  }
  if (r.offset >= size && !(r.offset == 0 && size == 0)) {
    return range_error("offset %u is past the op's %u-byte output", (unsigned)r.offset, (unsigned)size);
  }
  if (ptf_crc32(0, frame_buffer(), PICOTFLM_INPUT_BYTES) != r.crc) {
    return send_error("crc", "input bytes do not match the CRC-32: send the frame's loads again");
  }
  if (kSwitching) memcpy(g_interpreter->input(0)->data.raw, frame_buffer(), PICOTFLM_INPUT_BYTES);
  uint32_t n = (uint32_t)size - r.offset;
  if (n > PTF_LAYER_CHUNK) n = PTF_LAYER_CHUNK;
  g_capture.Arm(r.n, (const uint8_t*)t->data.raw + r.offset, n);
  void* profiler = ctx->profiler;
  ctx->profiler = &g_capture;  // for this Invoke only
  const bool ok = g_interpreter->Invoke() == kTfLiteOk;
  ctx->profiler = profiler;
  if (!ok) return send_error("invoke", "Invoke failed");
  if (!g_capture.captured) return send_error("invoke", "the op did not run during Invoke");
  ptf_json_t j;
  begin(&j, "layer");
  ptf_json_int(&j, "op", r.n);
  ptf_json_int(&j, "ops", ops);
  ptf_json_str(&j, "name", g_capture.tag ? g_capture.tag : "?");
  ptf_json_int(&j, "tensor", tensor_index);
  ptf_json_str(&j, "type", TfLiteTypeGetName(t->type));
  ptf_json_int(&j, "size", (long long)size);
  ptf_json_int(&j, "offset", r.offset);
  ptf_json_hex(&j, "data", g_chunk, n);
  send(&j);
}

}  // namespace app
