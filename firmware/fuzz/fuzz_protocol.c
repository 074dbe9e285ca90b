// libFuzzer harness for the firmware's serial protocol (firmware/src/protocol.c, crc32.c): the same
// C source the firmware compiles, fed arbitrary bytes on the host under ASan and UBSan.
//
// The input is a byte stream from the host, handled as main.cpp handles it: bytes go one by one into
// the line assembler; every complete line is parsed (against the MicroPizzaNet input size and two
// tiny ones) and answered in a reply buffer of the firmware's size. What the firmware then does with
// a request is mirrored where it touches memory: `load` copies into an input tensor of exactly
// `input_bytes` bytes and `infer` checksums `n` bytes of it, so a range check that lets a request
// past the tensor is an ASan error here. Every reply frame is checked against docs/protocol.md.
//
//   clang -g -O1 -fsanitize=fuzzer,address,undefined -I firmware/src firmware/fuzz/fuzz_protocol.c \
//         firmware/src/protocol.c firmware/src/crc32.c -o fuzz_protocol     (or: make fuzz)
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crc32.h"
#include "protocol.h"

#define PAYLOAD_MAX 2048                    // as kPayloadMax in main.cpp
#define FRAME_CAP (1 + PAYLOAD_MAX + 11 + 1)  // as g_frame in main.cpp

static void fail(const char* what) {
  fprintf(stderr, "protocol invariant broken: %s\n", what);
  abort();
}

// `$<json>*<8 lowercase hex>\n`, the CRC-32 of the payload, printable ASCII, no other newline.
static void check_frame(const char* f, uint32_t n, uint32_t cap) {
  if (n == 0) fail("no reply frame");
  if (n + 1 > cap) fail("frame longer than its buffer");
  if (f[0] != '$' || f[n - 1] != '\n' || n < 13 || f[n - 10] != '*') fail("frame layout");
  for (uint32_t i = 0; i + 1 < n; i++) {
    unsigned char c = (unsigned char)f[i];
    if (c < 0x20 || c > 0x7e) fail("non-printable byte in a frame");
  }
  char want[9];
  snprintf(want, sizeof want, "%08lx", (unsigned long)ptf_crc32(0, f + 1, n - 11));
  if (memcmp(want, f + n - 9, 8) != 0) fail("frame checksum");
  if (f[1] != '{' || f[n - 11] != '}') fail("payload is not an object");
}

static void check_name(const ptf_request_t* r) {
  const char* end = memchr(r->name, '\0', sizeof r->name);
  if (end == NULL || end == r->name) fail("name not terminated");
  size_t n = (size_t)(end - r->name);
  if (strcmp(r->name, "?") == 0) return;
  for (size_t i = 0; i < n; i++) {
    char c = r->name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) fail("unsafe name");
  }
}

static char g_frame[FRAME_CAP];

static void answer(const ptf_request_t* r, uint8_t* tensor, uint32_t input_bytes) {
  check_name(r);
  if (r->cmd == PTF_CMD_NONE) return;
  if (r->cmd == PTF_CMD_ERROR) {
    if (!r->err || !r->msg) fail("error without code or message");
    check_frame(g_frame, ptf_error_reply(r, r->err, r->msg, g_frame, sizeof g_frame), sizeof g_frame);
    return;
  }
  ptf_json_t j;
  ptf_json_begin(&j, g_frame + 1, PAYLOAD_MAX + 1, 1, r->name, r);
  switch (r->cmd) {
    case PTF_CMD_BENCH:
      if (r->n < 1 || r->n > PTF_BENCH_MAX) fail("bench runs out of range");
      break;
    case PTF_CMD_LOAD:  // main.cpp: memcpy(input->data.raw + r.n, r.data, r.data_len)
      if (r->data_len < 1 || r->data_len > PTF_LOAD_MAX) fail("load length out of range");
      memcpy(tensor + r->n, r->data, r->data_len);
      ptf_json_hex(&j, "data", r->data, r->data_len);
      break;
    case PTF_CMD_INFER:  // main.cpp: ptf_crc32(0, input->data.raw, r.n)
      if (r->n != input_bytes) fail("infer length is not the tensor size");
      ptf_json_int(&j, "match", ptf_crc32(0, tensor, r->n) == r->crc);
      break;
    default:
      break;
  }
  ptf_json_int(&j, "n", r->n);
  ptf_json_end(&j);
  if (j.overflow) fail("a small reply overflowed");
  check_frame(g_frame, ptf_frame(j.buf, j.len, g_frame, sizeof g_frame), sizeof g_frame);
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const uint32_t sizes[] = {6912, 1, 0};  // MicroPizzaNet's 48x48x3 input, and tiny ones
  static ptf_line_t line;
  static ptf_request_t req;
  ptf_line_reset(&line);
  for (size_t i = 0; i < size; i++) {
    if (!ptf_line_feed(&line, data[i])) {
      if (line.len >= PTF_LINE_MAX) fail("line buffer past its limit");
      continue;
    }
    if (line.len >= PTF_LINE_MAX || line.buf[line.len] != '\0') fail("line not terminated");
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
      uint32_t input_bytes = sizes[s];
      // A heap block of exactly the tensor's size, so ASan sees every byte past it.
      uint8_t* tensor = (uint8_t*)malloc(input_bytes ? input_bytes : 1);
      if (!tensor) return 0;
      memset(tensor, 0, input_bytes ? input_bytes : 1);
      ptf_parse(line.buf, line.len, line.overflow, input_bytes, &req);
      answer(&req, input_bytes ? tensor : tensor + 1, input_bytes);
      free(tensor);
    }
    // The line as an error message (setup errors carry text the host never sent, any length):
    // the reply must still fit the buffer, in a small one too.
    uint32_t cap = 12 + (uint32_t)(line.len % 300);
    uint32_t n = ptf_error_reply(&req, "setup", line.buf, g_frame, cap);
    if (n) check_frame(g_frame, n, cap);
    ptf_line_reset(&line);
  }
  return 0;
}
