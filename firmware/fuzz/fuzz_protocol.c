// libFuzzer harness for the firmware's serial protocol (firmware/src/link/protocol.c, crc32.c): the same
// C source the firmware compiles, fed arbitrary bytes on the host under ASan and UBSan.
//
// The input is a byte stream from the host, handled as the firmware (main.cpp, src/app) handles it: bytes go one by one into
// the line assembler; every complete line is parsed (against the MicroPizzaNet input size and two
// tiny ones) and answered through the firmware's 64-byte chunk buffer. What the firmware then does
// with a request is mirrored where it touches memory: `load` copies into an input tensor of exactly
// `input_bytes` bytes and `infer` checksums `n` bytes of it, so a range check that lets a request
// past the tensor is an ASan error here. Every reply frame is checked against docs/protocol.md, and
// the same reply streamed through a chunk of another size (from the input) must be the same bytes.
// The line is also sent back as text the host never chose (an error message, a field of a reply
// under a small limit, the message ending a reply already begun), so that cut replies are fuzzed.
//
//   clang -g -O1 -fsanitize=fuzzer,address,undefined -I firmware/src/link firmware/fuzz/fuzz_protocol.c \
//         firmware/src/link/protocol.c firmware/src/link/crc32.c -o fuzz_protocol     (or: make fuzz)
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crc32.h"
#include "protocol.h"

#define CHUNK 64  // as kReplyChunk in src/app/reply.cpp
#define FRAME_MAX (1 + PTF_PAYLOAD_MAX + PTF_TAIL_MAX + 11)

static void fail(const char* what) {
  fprintf(stderr, "protocol invariant broken: %s\n", what);
  abort();
}

// Collects one frame as the serial line would carry it.
typedef struct {
  char buf[2 * FRAME_MAX];
  uint32_t len;
  uint32_t chunk;
  int short_writes;
} sink_t;

static void sink_write(void* ctx, const char* data, uint32_t len) {
  sink_t* s = (sink_t*)ctx;
  if (len == 0 || (s->chunk && len > s->chunk)) fail("a write is empty or longer than the chunk");
  if (s->chunk && len < s->chunk && s->short_writes++) fail("a short write before the last");
  if (s->len + len > sizeof s->buf) fail("frame longer than any reply can be");
  memcpy(s->buf + s->len, data, len);
  s->len += len;
}

static char g_chunk[CHUNK], g_chunk2[256];
static sink_t g_sink, g_sink2;

static ptf_out_t out_for(sink_t* s, char* chunk, uint32_t size, uint32_t limit) {
  memset(s, 0, sizeof *s);
  s->chunk = size;
  ptf_out_t o = {sink_write, s, chunk, size, limit};
  return o;
}

// The payload's brackets match outside strings, and every string ends (a cut must not break them).
static void check_brackets(const sink_t* s) {
  char stack[64];
  uint32_t depth = 0;
  int in_string = 0;
  for (uint32_t i = 1; i + 10 < s->len; i++) {
    char c = s->buf[i];
    if (in_string) {
      if (c == '\\') i++;
      else if (c == '"') in_string = 0;
      continue;
    }
    if (c == '"') {
      in_string = 1;
    } else if (c == '{' || c == '[') {
      if (depth == sizeof stack) fail("payload nested too deep");
      stack[depth++] = c;
    } else if (c == '}' || c == ']') {
      if (depth == 0 || stack[--depth] != (c == '}' ? '{' : '[')) fail("payload brackets do not match");
      if (depth == 0 && i + 11 != s->len) fail("text after the payload's closing brace");
    }
  }
  if (in_string || depth != 0) fail("payload ends inside a string or an array/object");
}

// `$<json>*<8 lowercase hex>\n`, the CRC-32 of the payload, printable ASCII, no other newline; the
// payload within the limit, or, for a cut or error-ended reply, within the limit plus its ending.
static void check_frame(const sink_t* s, uint32_t payload_max) {
  const char* f = s->buf;
  uint32_t n = s->len;
  if (n == 0) fail("no reply frame");
  if (f[0] != '$' || f[n - 1] != '\n' || n < 13 || f[n - 10] != '*') fail("frame layout");
  if (n - 11 > payload_max) fail("payload longer than the protocol allows");
  for (uint32_t i = 0; i + 1 < n; i++) {
    unsigned char c = (unsigned char)f[i];
    if (c < 0x20 || c > 0x7e) fail("non-printable byte in a frame");
  }
  char want[9];
  snprintf(want, sizeof want, "%08lx", (unsigned long)ptf_crc32(0, f + 1, n - 11));
  if (memcmp(want, f + n - 9, 8) != 0) fail("frame checksum");
  if (f[1] != '{' || f[n - 11] != '}') fail("payload is not an object");
  check_brackets(s);
}

static void check_same(const sink_t* a, const sink_t* b) {
  if (a->len != b->len || memcmp(a->buf, b->buf, a->len) != 0) fail("the frame depends on the chunk size");
}

static int ends_as_range_error(const sink_t* s) {
  static const char tail[] = ",\"ok\":false,\"err\":\"range\",\"msg\":\"reply of ";
  for (uint32_t i = 0; i + sizeof tail - 1 <= s->len; i++) {
    if (memcmp(s->buf + i, tail, sizeof tail - 1) == 0) return 1;
  }
  return 0;
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

// The reply the firmware (src/app/commands.cpp) would send, through `out`.
static void reply(const ptf_out_t* out, const ptf_request_t* r, uint8_t* tensor, uint32_t input_bytes) {
  if (r->cmd == PTF_CMD_ERROR) {
    ptf_error_reply(out, r, r->err, r->msg);
    return;
  }
  ptf_json_t j;
  ptf_json_begin(&j, out, 1, r->name, r);
  switch (r->cmd) {
    case PTF_CMD_BENCH:
      if (r->n < 1 || r->n > PTF_BENCH_MAX) fail("bench runs out of range");
      break;
    case PTF_CMD_LOAD:  // src/app/commands.cpp: memcpy(input->data.raw + r.n, r.data, r.data_len)
      if (r->data_len < 1 || r->data_len > PTF_LOAD_MAX) fail("load length out of range");
      memcpy(tensor + r->n, r->data, r->data_len);
      ptf_json_hex(&j, "data", r->data, r->data_len);
      break;
    case PTF_CMD_INFER:  // src/app/commands.cpp: ptf_crc32(0, input->data.raw, r.n)
      if (r->n != input_bytes) fail("infer length is not the tensor size");
      ptf_json_int(&j, "match", ptf_crc32(0, tensor, r->n) == r->crc);
      break;
    default:
      break;
  }
  ptf_json_int(&j, "n", r->n);
  ptf_json_end(&j);
  if (j.cut) fail("a small reply was cut");
}

static void answer(const ptf_request_t* r, uint8_t* tensor, uint32_t input_bytes, uint32_t chunk2) {
  check_name(r);
  if (r->cmd == PTF_CMD_NONE) return;
  if (r->cmd == PTF_CMD_ERROR && (!r->err || !r->msg)) fail("error without code or message");
  ptf_out_t out = out_for(&g_sink, g_chunk, CHUNK, PTF_PAYLOAD_MAX);
  reply(&out, r, tensor, input_bytes);
  check_frame(&g_sink, PTF_PAYLOAD_MAX);
  if (r->cmd == PTF_CMD_LOAD || r->cmd == PTF_CMD_INFER) return;  // they write or read the tensor: once
  ptf_out_t out2 = out_for(&g_sink2, g_chunk2, chunk2, PTF_PAYLOAD_MAX);
  reply(&out2, r, tensor, input_bytes);
  check_same(&g_sink, &g_sink2);
}

// The line, bytes the host chose, as text in replies: an error message under a small limit (replaced
// when too long, never cut), a field of a reply under a small limit (cut), and the message that ends
// a reply already begun. Each through two chunk sizes.
static void echo(const ptf_request_t* req, const ptf_line_t* line, uint32_t chunk2) {
  uint32_t limit = 12 + line->len % 300;
  for (int pass = 0; pass < 2; pass++) {
    sink_t* s = pass ? &g_sink2 : &g_sink;
    ptf_out_t out = pass ? out_for(s, g_chunk2, chunk2, limit) : out_for(s, g_chunk, CHUNK, limit);
    ptf_error_reply(&out, req, "setup", line->buf);
    check_frame(s, limit > 120 ? limit : 120);  // the short message fits in 120 bytes
  }
  check_same(&g_sink, &g_sink2);
  for (int pass = 0; pass < 2; pass++) {
    sink_t* s = pass ? &g_sink2 : &g_sink;
    ptf_out_t out = pass ? out_for(s, g_chunk2, chunk2, limit) : out_for(s, g_chunk, CHUNK, limit);
    ptf_json_t j;
    ptf_json_begin(&j, &out, 1, req->name, req);
    ptf_json_open(&j, "lines", '[');
    ptf_json_open(&j, NULL, '{');
    ptf_json_str(&j, line->buf, line->buf);
    ptf_json_hex(&j, "hex", (const uint8_t*)line->buf, line->len);
    ptf_json_close(&j, '}');
    ptf_json_close(&j, ']');
    ptf_json_end(&j);
    check_frame(s, (limit > 60 ? limit : 60) + PTF_TAIL_MAX);
    if (j.cut != ends_as_range_error(s)) fail("a cut reply does not end as error range, or a whole one does");
    if (!j.cut && s->len - 11 > limit) fail("a whole reply over the limit");
  }
  check_same(&g_sink, &g_sink2);
  for (int pass = 0; pass < 2; pass++) {
    sink_t* s = pass ? &g_sink2 : &g_sink;
    ptf_out_t out = pass ? out_for(s, g_chunk2, chunk2, PTF_PAYLOAD_MAX) : out_for(s, g_chunk, CHUNK, PTF_PAYLOAD_MAX);
    ptf_json_t j;
    ptf_json_begin(&j, &out, 1, req->name, req);
    ptf_json_open(&j, "outputs", '[');
    ptf_json_hex(&j, NULL, (const uint8_t*)line->buf, line->len % 7);
    ptf_json_end_error(&j, "invoke", line->buf);
    check_frame(s, PTF_PAYLOAD_MAX);
  }
  check_same(&g_sink, &g_sink2);
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const uint32_t sizes[] = {6912, 1, 0};  // MicroPizzaNet's 48x48x3 input, and tiny ones
  static ptf_line_t line;
  static ptf_request_t req;
  uint32_t chunk2 = size ? data[0] % sizeof g_chunk2 : 1;  // another chunk size (0: no buffer)
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
      answer(&req, input_bytes ? tensor : tensor + 1, input_bytes, chunk2);
      free(tensor);
    }
    echo(&req, &line, chunk2);
    ptf_line_reset(&line);
  }
  return 0;
}
