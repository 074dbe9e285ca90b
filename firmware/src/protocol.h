// The serial protocol of docs/protocol.md, board side: assembling request lines, parsing them
// (bounds-checked, never trusting the host), and building framed JSON replies.
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
  PTF_CMD_ERROR  // a request that gets an error reply (err/msg set)
} ptf_cmd_t;

typedef struct {
  ptf_cmd_t cmd;
  char name[16];  // the command as sent, when it is safe to echo (else "?")
  int has_id;
  uint32_t id;
  uint32_t n;    // bench: runs; arena: bytes; load: offset; infer/auto: length; select: variant;
                 // policy: metric (0 confidence, 1 margin)
  uint32_t crc;  // infer/auto: CRC-32 of the input bytes
  uint32_t threshold;  // policy: threshold in thousandths (0..1000)
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

// Parse one complete line. `input_bytes` bounds `load` and `infer`.
void ptf_parse(const char* line, uint32_t len, int overflow, uint32_t input_bytes, ptf_request_t* out);

// Reply building: a JSON object in a caller's buffer, then framed as `$<json>*<crc32>\n`.
typedef struct {
  char* buf;
  uint32_t cap;
  uint32_t len;
  int overflow;
  int first;
} ptf_json_t;
void ptf_json_begin(ptf_json_t* j, char* buf, uint32_t cap, int ok, const char* cmd, const ptf_request_t* req);
void ptf_json_int(ptf_json_t* j, const char* key, long long value);
void ptf_json_bool(ptf_json_t* j, const char* key, int value);
void ptf_json_str(ptf_json_t* j, const char* key, const char* value);
void ptf_json_hex(ptf_json_t* j, const char* key, const uint8_t* data, uint32_t n);
// A NULL key makes the value an element of the array just opened: ptf_json_str(j, NULL, "x").
void ptf_json_key(ptf_json_t* j, const char* key);  // then raw text with ptf_json_raw
void ptf_json_raw(ptf_json_t* j, const char* text);
void ptf_json_open(ptf_json_t* j, const char* key, char bracket);  // `"key":[` or `{` (key NULL: an element)
void ptf_json_close(ptf_json_t* j, char bracket);
void ptf_json_end(ptf_json_t* j);
// Frame `payload` into `out` (needs len + 12 bytes); returns the frame length, 0 if it does not fit.
uint32_t ptf_frame(const char* payload, uint32_t len, char* out, uint32_t cap);
// A framed error reply for `req` (its name and id), built directly in `out`: no buffer of its own.
// A message too long for `out` is replaced by a short one, so an error always gets a reply.
uint32_t ptf_error_reply(const ptf_request_t* req, const char* err, const char* msg, char* out, uint32_t cap);

#ifdef __cplusplus
}
#endif
#endif
