// Host test driver for firmware/src/link/protocol.c (tests/firmware/test_protocol_c.py). Modes, by argv:
//   (none) [chunk]        bytes on stdin go to the line assembler and parser exactly as the firmware
//                         feeds them; one reply per request (error replies as the firmware sends them)
//   error <limit>         each stdin line is the message of an error reply to `info @42`
//   nested                one reply with arrays of objects and of hex strings
//   script <chunk> <limit>  one reply built from the script on stdin (below) by the streaming writer,
//                         through a chunk buffer of <chunk> bytes (0: none); <chunk> may be a range
//                         `lo-hi`: the reply is built once per size, and every frame must be the same
//   old <cap>             the same script through the writer protocol.c had before replies were
//                         streamed (below, verbatim), framed by its ptf_frame; then one line with the
//                         payload offset after each script line: what the tests compare against
//   old-error <cap>       as `error`, by the old writer in an old frame buffer of <cap> bytes
// A script is one operation per line; keys and strings are hex (`-`: no key, `=`: empty), so any byte fits:
//   begin <ok 0|1> <cmd hex> [id]   int <key> <value>   bool <key> <0|1>   str <key> <hex>
//   hex <key> <hex bytes>   open <key> <[ or {>   close <] or }>   end   fail <err hex> <msg hex>
// Every write of the streaming writer is checked: a full chunk, or the last bytes of the frame.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crc32.h"
#include "protocol.h"

// ------------------------------------------------------------------------ the old writer
// firmware/src/link/protocol.c before replies were streamed (commit d9924b2), names prefixed `old_`: the
// whole payload built in one buffer, then framed. The streaming writer must send the same bytes.
typedef struct {
  char* buf;
  uint32_t cap;
  uint32_t len;
  int overflow;
  int first;
} old_json_t;
void old_json_begin(old_json_t* j, char* buf, uint32_t cap, int ok, const char* cmd, const ptf_request_t* req);
void old_json_int(old_json_t* j, const char* key, long long value);
void old_json_bool(old_json_t* j, const char* key, int value);
void old_json_str(old_json_t* j, const char* key, const char* value);
void old_json_hex(old_json_t* j, const char* key, const uint8_t* data, uint32_t n);
void old_json_key(old_json_t* j, const char* key);
void old_json_raw(old_json_t* j, const char* text);
void old_json_open(old_json_t* j, const char* key, char bracket);
void old_json_close(old_json_t* j, char bracket);
void old_json_end(old_json_t* j);
uint32_t old_frame(const char* payload, uint32_t len, char* out, uint32_t cap);
uint32_t old_error_reply(const ptf_request_t* req, const char* err, const char* msg, char* out, uint32_t cap);

static void old_put(old_json_t* j, const char* s, uint32_t n) {
  if (j->overflow || j->len + n + 1 > j->cap) {
    j->overflow = 1;
    return;
  }
  memcpy(j->buf + j->len, s, n);
  j->len += n;
  j->buf[j->len] = '\0';
}

static void old_puts(old_json_t* j, const char* s) { old_put(j, s, (uint32_t)strlen(s)); }

static void old_put_escaped(old_json_t* j, const char* s) {
  old_puts(j, "\"");
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    char esc[8];
    if (c == '"' || c == '\\') {
      esc[0] = '\\';
      esc[1] = (char)c;
      old_put(j, esc, 2);
    } else if (c < 0x20 || c > 0x7e) {
      snprintf(esc, sizeof esc, "\\u%04x", c);
      old_put(j, esc, 6);
    } else {
      old_put(j, (const char*)&c, 1);
    }
  }
  old_puts(j, "\"");
}

void old_json_key(old_json_t* j, const char* key) {
  if (!j->first) old_puts(j, ",");
  j->first = 0;
  if (key) {
    old_put_escaped(j, key);
    old_puts(j, ":");
  }
}

void old_json_raw(old_json_t* j, const char* text) { old_puts(j, text); }

void old_json_open(old_json_t* j, const char* key, char bracket) {
  old_json_key(j, key);
  old_put(j, &bracket, 1);
  j->first = 1;
}

void old_json_close(old_json_t* j, char bracket) {
  old_put(j, &bracket, 1);
  j->first = 0;
}

void old_json_begin(old_json_t* j, char* buf, uint32_t cap, int ok, const char* cmd, const ptf_request_t* req) {
  j->buf = buf;
  j->cap = cap;
  j->len = 0;
  j->overflow = 0;
  j->first = 1;
  if (cap) buf[0] = '\0';
  old_puts(j, "{");
  old_json_bool(j, "ok", ok);
  old_json_str(j, "cmd", cmd);
  if (req && req->has_id) old_json_int(j, "id", req->id);
}

void old_json_int(old_json_t* j, const char* key, long long value) {
  char num[24];
  old_json_key(j, key);
  snprintf(num, sizeof num, "%lld", value);
  old_puts(j, num);
}

void old_json_bool(old_json_t* j, const char* key, int value) {
  old_json_key(j, key);
  old_puts(j, value ? "true" : "false");
}

void old_json_str(old_json_t* j, const char* key, const char* value) {
  old_json_key(j, key);
  old_put_escaped(j, value ? value : "");
}

void old_json_hex(old_json_t* j, const char* key, const uint8_t* data, uint32_t n) {
  static const char digits[] = "0123456789abcdef";
  old_json_key(j, key);
  old_puts(j, "\"");
  for (uint32_t i = 0; i < n; i++) {
    char two[2] = {digits[data[i] >> 4], digits[data[i] & 15]};
    old_put(j, two, 2);
  }
  old_puts(j, "\"");
}

void old_json_end(old_json_t* j) { old_puts(j, "}"); }

uint32_t old_frame(const char* payload, uint32_t len, char* out, uint32_t cap) {
  if (cap < 12 || len > cap - 12) return 0;
  uint32_t crc = ptf_crc32(0, payload, len);
  memmove(out + 1, payload, len);  // the payload may already sit at out + 1
  out[0] = '$';
  snprintf(out + 1 + len, cap - 1 - len, "*%08lx\n", (unsigned long)crc);
  return len + 11;
}

static void old_error_payload(old_json_t* j, char* buf, uint32_t cap, const ptf_request_t* req, const char* err,
                          const char* msg) {
  old_json_begin(j, buf, cap, 0, req ? req->name : "?", req);
  old_json_str(j, "err", err);
  old_json_str(j, "msg", msg);
  old_json_end(j);
}

uint32_t old_error_reply(const ptf_request_t* req, const char* err, const char* msg, char* out, uint32_t cap) {
  if (cap < 12) return 0;
  // The payload is built at out + 1 with room left for "*<crc>\n" and the terminating NUL.
  old_json_t j;
  old_error_payload(&j, out + 1, cap - 11, req, err, msg);
  if (j.overflow) old_error_payload(&j, out + 1, cap - 11, req, err, "(message too long for the reply)");
  if (j.overflow) return 0;
  return old_frame(out + 1, j.len, out, cap);
}

// ---------------------------------------------------------------------- output and checks
typedef struct {
  char* buf;  // the frame as written
  uint32_t len, cap;
  uint32_t chunk;  // the chunk size in use: every write but the last is exactly this long
  int writes, short_writes;
} sink_t;

static void sink_write(void* ctx, const char* data, uint32_t len) {
  sink_t* s = (sink_t*)ctx;
  s->writes++;
  if (len == 0) {
    fprintf(stderr, "empty write\n");
    exit(3);
  }
  if (s->chunk > 0 && len > s->chunk) {
    fprintf(stderr, "write of %u bytes from a %u-byte chunk\n", len, s->chunk);
    exit(3);
  }
  if (s->chunk > 0 && len < s->chunk) s->short_writes++;
  if (s->len + len > s->cap) {
    fprintf(stderr, "frame longer than %u bytes\n", s->cap);
    exit(3);
  }
  memcpy(s->buf + s->len, data, len);
  s->len += len;
}

static char g_frame_out[1 << 20];
static char g_chunk[1 << 16];
static sink_t g_sink;
static ptf_out_t g_out;

static void out_setup(uint32_t chunk, uint32_t limit) {
  g_sink = (sink_t){g_frame_out, 0, sizeof g_frame_out, chunk, 0, 0};
  g_out = (ptf_out_t){sink_write, &g_sink, g_chunk, chunk, limit};
}

// The frame is complete and whole: one short write at most (the last), ending with the newline.
static void out_flush_check(void) {
  if (g_sink.short_writes > 1 || (g_sink.len > 0 && g_frame_out[g_sink.len - 1] != '\n')) {
    fprintf(stderr, "frame cut into uneven writes (%d short) or not ended\n", g_sink.short_writes);
    exit(3);
  }
}

static void out_flush(void) {
  out_flush_check();
  fwrite(g_frame_out, 1, g_sink.len, stdout);
  g_sink.len = 0;
  g_sink.writes = g_sink.short_writes = 0;
}

// ------------------------------------------------------------------------------- scripts
static int unhex(const char* s, char* out, uint32_t cap) {  // -> bytes written (NUL added), -1 bad
  if (strcmp(s, "=") == 0) s = "";  // the empty string
  uint32_t n = (uint32_t)strlen(s);
  if (n % 2 || n / 2 + 1 > cap) return -1;
  for (uint32_t i = 0; i < n; i += 2) {
    unsigned v;
    if (sscanf(s + i, "%2x", &v) != 1) return -1;
    out[i / 2] = (char)v;
  }
  out[n / 2] = '\0';
  return (int)(n / 2);
}

static char g_line[1 << 18];
static char g_a[1 << 17], g_b[1 << 17];

// One script line's operation, applied to the streaming writer (`j`) or the old one (`o`).
static int apply(const char* line, ptf_json_t* j, old_json_t* o, char* old_buf, uint32_t old_cap) {
  char op[16], x[sizeof g_line], y[sizeof g_line];
  x[0] = y[0] = '\0';
  int n = sscanf(line, "%15s %s %s", op, x, y);
  if (n < 1) return -1;
  const char* key = NULL;
  if (n >= 2 && strcmp(op, "begin") && strcmp(op, "close") && strcmp(op, "fail") && strcmp(x, "-")) {
    if (unhex(x, g_a, sizeof g_a) < 0) return -1;
    key = g_a;
  }
  if (!strcmp(op, "begin")) {
    static ptf_request_t req;
    memset(&req, 0, sizeof req);
    char idtok[16] = "";
    if (sscanf(line, "begin %15s %s %15s", op, x, idtok) == 3) {
      req.has_id = 1;
      req.id = (uint32_t)strtoul(idtok, NULL, 10);
    }
    if (unhex(x, g_b, sizeof g_b) < 0) return -1;
    int ok = atoi(op);
    if (j) ptf_json_begin(j, &g_out, ok, g_b, &req);
    if (o) old_json_begin(o, old_buf, old_cap, ok, g_b, &req);
  } else if (!strcmp(op, "int")) {
    long long v = strtoll(y, NULL, 10);
    if (j) ptf_json_int(j, key, v);
    if (o) old_json_int(o, key, v);
  } else if (!strcmp(op, "bool")) {
    if (j) ptf_json_bool(j, key, atoi(y));
    if (o) old_json_bool(o, key, atoi(y));
  } else if (!strcmp(op, "str")) {
    if (unhex(y, g_b, sizeof g_b) < 0) return -1;
    if (j) ptf_json_str(j, key, g_b);
    if (o) old_json_str(o, key, g_b);
  } else if (!strcmp(op, "hex")) {
    int m = unhex(y, g_b, sizeof g_b);
    if (m < 0) return -1;
    if (j) ptf_json_hex(j, key, (const uint8_t*)g_b, (uint32_t)m);
    if (o) old_json_hex(o, key, (const uint8_t*)g_b, (uint32_t)m);
  } else if (!strcmp(op, "open")) {
    if (j) ptf_json_open(j, key, y[0]);
    if (o) old_json_open(o, key, y[0]);
  } else if (!strcmp(op, "close")) {
    if (j) ptf_json_close(j, x[0]);
    if (o) old_json_close(o, x[0]);
  } else if (!strcmp(op, "end")) {
    if (j) ptf_json_end(j);
    if (o) old_json_end(o);
  } else if (!strcmp(op, "fail")) {  // the streaming writer only: the old one had no such end
    if (unhex(x, g_a, sizeof g_a) < 0 || unhex(y, g_b, sizeof g_b) < 0) return -1;
    if (j) ptf_json_end_error(j, g_a, g_b);
  } else {
    return -1;
  }
  return 0;
}

static char g_script[1 << 20], g_first_frame[1 << 20];

// The script once per chunk size from `lo` to `hi`: every frame must be the same; it is printed once.
static int run_script(uint32_t lo, uint32_t hi, uint32_t limit) {
  size_t n = fread(g_script, 1, sizeof g_script - 1, stdin);
  uint32_t first_len = 0;
  g_script[n] = '\0';
  for (uint32_t chunk = lo; chunk <= hi; chunk++) {
    ptf_json_t j;
    out_setup(chunk, limit);
    for (char* p = g_script; *p;) {
      size_t len = strcspn(p, "\n");
      if (len >= sizeof g_line) return 2;
      memcpy(g_line, p, len);
      g_line[len] = '\0';
      p += len + (p[len] == '\n');
      if (g_line[0] && apply(g_line, &j, NULL, NULL, 0) < 0) return 2;
    }
    if (chunk == lo) {
      memcpy(g_first_frame, g_frame_out, g_sink.len);
      first_len = g_sink.len;
    } else if (g_sink.len != first_len || memcmp(g_first_frame, g_frame_out, first_len) != 0) {
      fprintf(stderr, "the frame through a %u-byte chunk differs from the one through %u bytes\n", chunk, lo);
      return 4;
    }
    if (chunk < hi) {  // checked and dropped; the last one is printed
      out_flush_check();
      g_sink.len = 0;
      g_sink.writes = g_sink.short_writes = 0;
    }
  }
  out_flush();
  return 0;
}

static char g_old_payload[1 << 20], g_old_frame[(1 << 20) + 16];
static uint32_t g_offsets[1 << 14];

static int run_old(uint32_t cap) {
  old_json_t o;
  uint32_t n = 0;
  if (cap > sizeof g_old_payload) return 2;
  while (fgets(g_line, sizeof g_line, stdin)) {
    g_line[strcspn(g_line, "\n")] = '\0';
    if (!g_line[0]) continue;
    if (apply(g_line, NULL, &o, g_old_payload, cap) < 0 || n == sizeof g_offsets / sizeof g_offsets[0]) return 2;
    g_offsets[n++] = o.overflow ? 0 : o.len;
  }
  if (o.overflow) {
    printf("overflow\n");
  } else {
    fwrite(g_old_frame, 1, old_frame(o.buf, o.len, g_old_frame, sizeof g_old_frame), stdout);
  }
  for (uint32_t i = 0; i < n; i++) printf(i ? " %u" : "%u", g_offsets[i]);
  printf("\n");
  return 0;
}

int main(int argc, char** argv) {
  static ptf_line_t line;
  static ptf_request_t req;
  static char msg[1 << 16];
  if (argc > 3 && strcmp(argv[1], "script") == 0) {  // chunk: a size, or a range `lo-hi`
    unsigned lo = 0, hi = 0;
    int n = sscanf(argv[2], "%u-%u", &lo, &hi);
    if (n < 1 || lo > sizeof g_chunk) return 2;
    if (n < 2) hi = lo;
    if (hi < lo || hi > sizeof g_chunk) return 2;
    return run_script(lo, hi, (uint32_t)atoi(argv[3]));
  }
  if (argc > 2 && strcmp(argv[1], "old") == 0) return run_old((uint32_t)atoi(argv[2]));
  if (argc > 2 && (strcmp(argv[1], "error") == 0 || strcmp(argv[1], "old-error") == 0)) {
    int old = argv[1][0] == 'o';
    uint32_t n = (uint32_t)atoi(argv[2]);
    if (old && n > sizeof g_old_frame) return 2;
    out_setup(64, n);
    while (fgets(msg, sizeof msg, stdin)) {
      msg[strcspn(msg, "\n")] = '\0';
      ptf_parse("info @42", 8, 0, 6912, &req);
      if (old) {
        uint32_t m = old_error_reply(&req, "setup", msg, g_old_frame, n);
        if (m == 0) printf("none\n");
        fwrite(g_old_frame, 1, m, stdout);
      } else {
        ptf_error_reply(&g_out, &req, "setup", msg);
        out_flush();
      }
    }
    return 0;
  }
  if (argc > 1 && strcmp(argv[1], "nested") == 0) {
    static const uint8_t bytes[3] = {0x00, 0x7f, 0xff};
    ptf_json_t j;
    out_setup(64, PTF_PAYLOAD_MAX);
    ptf_json_begin(&j, &g_out, 1, "profile", NULL);
    ptf_json_open(&j, "ops", '[');
    for (int i = 0; i < 2; i++) {
      ptf_json_open(&j, NULL, '{');
      ptf_json_str(&j, "op", i ? "MEAN" : "a\"b\\c\n");
      ptf_json_int(&j, "us", i);
      ptf_json_close(&j, '}');
    }
    ptf_json_close(&j, ']');
    ptf_json_open(&j, "outputs", '[');
    ptf_json_hex(&j, NULL, bytes, 3);
    ptf_json_hex(&j, NULL, bytes, 1);
    ptf_json_close(&j, ']');
    ptf_json_open(&j, "empty", '[');
    ptf_json_close(&j, ']');
    ptf_json_int(&j, "total", 7);
    ptf_json_end(&j);
    out_flush();
    return 0;
  }
  out_setup(argc > 1 ? (uint32_t)atoi(argv[1]) : 64, PTF_PAYLOAD_MAX);
  ptf_line_reset(&line);
  int c;
  while ((c = getchar()) != EOF) {
    if (!ptf_line_feed(&line, c)) continue;
    ptf_parse(line.buf, line.len, line.overflow, 6912, &req);
    if (req.cmd == PTF_CMD_NONE) {
      printf("none\n");
    } else if (req.cmd == PTF_CMD_ERROR) {
      ptf_error_reply(&g_out, &req, req.err, req.msg);
      out_flush();
    } else {
      ptf_json_t j;
      ptf_json_begin(&j, &g_out, 1, req.name, &req);
      ptf_json_int(&j, "code", req.cmd);
      ptf_json_int(&j, "n", req.n);
      ptf_json_int(&j, "crc", req.crc);
      if (req.cmd == PTF_CMD_POLICY) ptf_json_int(&j, "threshold", req.threshold);
      if (req.cmd == PTF_CMD_LAYER) ptf_json_int(&j, "offset", req.offset);
      ptf_json_hex(&j, "data", req.data, req.data_len);
      ptf_json_end(&j);
      out_flush();
    }
    ptf_line_reset(&line);
  }
  return 0;
}
