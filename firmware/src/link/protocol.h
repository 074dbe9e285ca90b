// The serial protocol of docs/protocol.md, board side: assembling request lines, parsing them
// (bounds-checked, never trusting the host), and streaming framed JSON replies.
// Plain C with no SDK includes: the same file compiles for the host, where tests feed it bad input.
#ifndef PICOTFLM_PROTOCOL_H_
#define PICOTFLM_PROTOCOL_H_
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

#define PTF_PROTO_VERSION 1
#define PTF_LINE_MAX 320  // bytes of a request line, newline included
#define PTF_LOAD_MAX 128  // bytes of one `load`
#define PTF_BENCH_MAX 1000
#define PTF_THRESHOLD_MAX 1000  // policy thresholds are thousandths of [0, 1]
#define PTF_LAYER_CHUNK 896     // bytes of an op's output one `layer` reply carries (1,792 hex digits)

typedef enum {
  PTF_CMD_NONE = 0,  // empty line: no reply
  PTF_CMD_INFO,
  PTF_CMD_MEM,
  PTF_CMD_BENCH,
  PTF_CMD_PROFILE,
  PTF_CMD_GOLDEN,
  PTF_CMD_LOAD,
  PTF_CMD_INFER,
  PTF_CMD_ARENA,
  PTF_CMD_VARIANTS,
  PTF_CMD_SELECT,
  PTF_CMD_POLICY,
  PTF_CMD_AUTO,
  PTF_CMD_CORES,
  PTF_CMD_LAYER,
  PTF_CMD_ERROR  // a request that gets an error reply (err/msg set)
} ptf_cmd_t;

typedef struct {
  ptf_cmd_t cmd;
  char name[16];  // the command as sent, when it is safe to echo (else "?")
  int has_id;
  uint32_t id;
  uint32_t n;    // bench: runs; arena: bytes; load: offset; infer/auto: length; select: variant; cores: 1 or 2;
                 // policy: metric (0 confidence, 1 margin)
  uint32_t crc;  // infer/auto: CRC-32 of the input bytes
  uint32_t threshold;  // policy: threshold in thousandths (0..1000)
  uint32_t offset;     // layer: byte offset into the op's output (n: the op index; crc: the input's CRC-32)
  uint32_t data_len;
  uint8_t data[PTF_LOAD_MAX];  // load: the bytes
  const char* err;             // error code (docs/protocol.md) when cmd == PTF_CMD_ERROR
  const char* msg;             // one-line message
} ptf_request_t;

// Line assembly: feed bytes; returns 1 when a line is complete (buf is NUL-terminated, without its
// newline and without a `\r` right before it; `overflow` says the line, newline included, was longer
// than PTF_LINE_MAX bytes and was cut). A `\r` anywhere else stays in the line (and is refused).
typedef struct {
  char buf[PTF_LINE_MAX + 1];
  uint32_t len;
  int overflow;
} ptf_line_t;
void ptf_line_reset(ptf_line_t* line);
int ptf_line_feed(ptf_line_t* line, int byte);

// Parse one complete line. `input_bytes` bounds `load`, `infer`, `auto` and `layer`.
void ptf_parse(const char* line, uint32_t len, int overflow, uint32_t input_bytes, ptf_request_t* out);

// Replies are streamed (docs/protocol.md): `$`, the JSON payload as the ptf_json_* calls build it, then
// `*<crc32>\n`. The bytes collect in the caller's chunk buffer, which goes to `write` whenever it is
// full and once more at the end of the reply; the CRC-32 is computed over the payload as it goes out.
// No call fails and nothing is built twice: a reply always ends as one valid frame.
//
// The fields of a payload (its `{`...`}`) are kept to `limit` bytes. The header (`ok`, `cmd`, `id`) is
// always written; after it, a field (key and value; an array's or object's opening; a closing bracket)
// that would take the payload past the limit is left out, with everything after it. Such a cut reply
// ends with its open arrays and objects closed and `,"ok":false,"err":"range","msg":"..."}`: a
// second "ok" key, which a JSON parser that keeps the last value of a key reads as an error reply.
// Those closing bytes may go past the limit, by at most PTF_TAIL_MAX.
#define PTF_PAYLOAD_MAX 2048   // the protocol's limit on a payload's fields
#define PTF_JSON_DEPTH 16      // arrays/objects open at once, the payload's own braces included
#define PTF_TAIL_TEXT_MAX 128  // err and msg of a cut or failed reply, quoted and escaped, together
// The end of a cut or failed reply: its closing brackets, `,"ok":false,"err":`, err, `,"msg":`, msg, `}`.
#define PTF_TAIL_MAX ((PTF_JSON_DEPTH - 1) + 18 + 7 + PTF_TAIL_TEXT_MAX + 1)

// Receives the frame's bytes: a full chunk, or the last bytes of a reply.
typedef void (*ptf_write_fn)(void* ctx, const char* data, uint32_t len);

// Where replies go. One is enough for every reply (they are written one at a time).
typedef struct {
  ptf_write_fn write;   // NULL: nothing is written, the payload is only measured (len, dropped)
  void* ctx;            // passed to write
  char* chunk;          // the only buffer a reply needs
  uint32_t chunk_size;  // bytes of chunk, up to 65535 (0: no buffer, each piece written at once)
  uint32_t limit;       // bytes of fields per payload: PTF_PAYLOAD_MAX
} ptf_out_t;

// One reply being written.
// Small on purpose: it lives on the stack of the command that answers, during its Invokes.
typedef struct {
  const ptf_out_t* out;
  uint32_t len;      // payload bytes written so far
  uint32_t dropped;  // payload bytes left out after a cut (what they would have been)
  uint32_t crc;      // CRC-32 of the payload bytes written so far
  uint16_t fill;     // bytes waiting in out->chunk
  uint16_t nest;     // open arrays/objects: bit i set when level i is an object (level 0: the payload)
  uint8_t depth;     // open arrays/objects (after a cut: those open when it happened)
  uint8_t first;     // the innermost array/object has no element yet
  uint8_t cut;       // a field did not fit the limit: it and the rest are left out
  uint8_t done;      // the frame is complete: further calls do nothing
} ptf_json_t;

void ptf_json_begin(ptf_json_t* j, const ptf_out_t* out, int ok, const char* cmd, const ptf_request_t* req);
void ptf_json_int(ptf_json_t* j, const char* key, long long value);
void ptf_json_bool(ptf_json_t* j, const char* key, int value);
void ptf_json_str(ptf_json_t* j, const char* key, const char* value);
void ptf_json_hex(ptf_json_t* j, const char* key, const uint8_t* data, uint32_t n);
// A NULL key makes the value an element of the array just opened: ptf_json_str(j, NULL, "x").
void ptf_json_open(ptf_json_t* j, const char* key, char bracket);  // `"key":[` or `{` (key NULL: an element)
void ptf_json_close(ptf_json_t* j, char bracket);
// The payload's `}` and the frame's end, sent. A cut reply ends as error `range` instead, its message
// giving the size the payload would have had.
void ptf_json_end(ptf_json_t* j);
// End a reply already begun as an error (what it sent stays): closes its open arrays and objects and
// appends `,"ok":false,"err":<err>,"msg":<msg>}`. A message longer than PTF_TAIL_TEXT_MAX allows is
// replaced by a short one.
void ptf_json_end_error(ptf_json_t* j, const char* err, const char* msg);
// A whole error reply for `req` (its name and id): `{"ok":false,"cmd":...,"err":...,"msg":...}`. It is
// measured first, and a message that would take it past the limit is replaced by a short one, so an
// error is never cut and always gets a reply.
void ptf_error_reply(const ptf_out_t* out, const ptf_request_t* req, const char* err, const char* msg);

#ifdef __cplusplus
}
#endif
#endif
