#include "protocol.h"

#include <stdio.h>
#include <string.h>

#include "crc32.h"

void ptf_line_reset(ptf_line_t* line) {
  line->len = 0;
  line->overflow = 0;
  line->buf[0] = '\0';
}

int ptf_line_feed(ptf_line_t* line, int byte) {
  if (byte < 0) return 0;
  if (byte == '\n') {
    if (line->len > 0 && line->buf[line->len - 1] == '\r') line->len--;  // "\r\n" ends a line too
    line->buf[line->len] = '\0';
    return 1;
  }
  // Every byte but the newline counts, `\r` included: at most PTF_LINE_MAX - 1 of them.
  if (line->len + 1 >= PTF_LINE_MAX) {
    line->overflow = 1;
    return 0;
  }
  line->buf[line->len++] = (char)byte;
  return 0;
}

static void set_error(ptf_request_t* r, const char* err, const char* msg) {
  r->cmd = PTF_CMD_ERROR;
  r->err = err;
  r->msg = msg;
}

// Decimal of 1..9 digits (no sign, no spaces). Returns 1 on success.
static int parse_dec(const char* s, uint32_t n, uint32_t* out) {
  if (n == 0 || n > 9) return 0;
  uint32_t v = 0;
  for (uint32_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return 0;
    v = v * 10u + (uint32_t)(s[i] - '0');
  }
  *out = v;
  return 1;
}

static int hex_val(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

typedef struct {
  const char* s;
  uint32_t n;
} tok_t;

void ptf_parse(const char* line, uint32_t len, int overflow, uint32_t input_bytes, ptf_request_t* r) {
  memset(r, 0, sizeof(*r));
  strcpy(r->name, "?");
  if (overflow) {
    set_error(r, "too_long", "request line longer than 320 bytes");
    return;
  }
  if (len == 0) {
    r->cmd = PTF_CMD_NONE;
    return;
  }
  for (uint32_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)line[i];
    if (c < 0x20 || c > 0x7e) {
      set_error(r, "bad_arg", "request has a non-printable byte");
      return;
    }
  }
  tok_t tok[6];
  uint32_t ntok = 0;
  uint32_t i = 0;
  while (i < len) {
    if (line[i] == ' ') {
      set_error(r, "bad_arg", "tokens must be separated by single spaces");
      return;
    }
    uint32_t start = i;
    while (i < len && line[i] != ' ') i++;
    if (ntok == 6) {
      set_error(r, "bad_arg", "too many arguments");
      return;
    }
    tok[ntok].s = line + start;
    tok[ntok].n = i - start;
    ntok++;
    if (i < len) {
      i++;  // the single space
      if (i == len) {
        set_error(r, "bad_arg", "trailing space");
        return;
      }
    }
  }
  // The command name, echoed only when it is short and alphanumeric.
  if (tok[0].n < sizeof(r->name)) {
    int safe = 1;
    for (uint32_t k = 0; k < tok[0].n; k++) {
      char c = tok[0].s[k];
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) safe = 0;
    }
    if (safe) {
      memcpy(r->name, tok[0].s, tok[0].n);
      r->name[tok[0].n] = '\0';
    }
  }
  // Optional request id as the last token.
  if (ntok > 1 && tok[ntok - 1].s[0] == '@') {
    if (!parse_dec(tok[ntok - 1].s + 1, tok[ntok - 1].n - 1, &r->id)) {
      set_error(r, "bad_arg", "request id must be @ and 1 to 9 digits");
      return;
    }
    r->has_id = 1;
    ntok--;
  }
  uint32_t nargs = ntok - 1;
  const tok_t* a = tok + 1;
#define CMD_IS(lit) (tok[0].n == sizeof(lit) - 1 && memcmp(tok[0].s, lit, sizeof(lit) - 1) == 0)
  if (CMD_IS("info") || CMD_IS("mem") || CMD_IS("profile") || CMD_IS("golden") || CMD_IS("variants")) {
    if (nargs != 0) {
      set_error(r, "bad_arg", "this command takes no arguments");
      return;
    }
    r->cmd = CMD_IS("info") ? PTF_CMD_INFO : CMD_IS("mem") ? PTF_CMD_MEM : CMD_IS("profile") ? PTF_CMD_PROFILE
             : CMD_IS("golden") ? PTF_CMD_GOLDEN : PTF_CMD_VARIANTS;
    return;
  }
  if (CMD_IS("select")) {
    if (nargs != 1 || !parse_dec(a[0].s, a[0].n, &r->n)) {
      set_error(r, "bad_arg", "usage: select <variant index>");
      return;
    }
    r->cmd = PTF_CMD_SELECT;  // the firmware checks the index against its variants
    return;
  }
  if (CMD_IS("cores")) {
    if (nargs != 1 || !parse_dec(a[0].s, a[0].n, &r->n)) {
      set_error(r, "bad_arg", "usage: cores <1|2>");
      return;
    }
    r->cmd = PTF_CMD_CORES;  // the firmware checks the count against the cores it has
    return;
  }
  if (CMD_IS("policy")) {
    int conf = nargs == 2 && a[0].n == 10 && memcmp(a[0].s, "confidence", 10) == 0;
    int margin = nargs == 2 && a[0].n == 6 && memcmp(a[0].s, "margin", 6) == 0;
    if ((!conf && !margin) || !parse_dec(a[1].s, a[1].n, &r->threshold)) {
      set_error(r, "bad_arg", "usage: policy <confidence|margin> <threshold in thousandths, 0 to 1000>");
      return;
    }
    if (r->threshold > PTF_THRESHOLD_MAX) {
      set_error(r, "range", "policy threshold must be 0 to 1000 thousandths (a score in [0, 1])");
      return;
    }
    r->n = margin ? 1u : 0u;
    r->cmd = PTF_CMD_POLICY;
    return;
  }
  if (CMD_IS("bench") || CMD_IS("arena")) {
    int bench = CMD_IS("bench");
    if (nargs != 1 || !parse_dec(a[0].s, a[0].n, &r->n)) {
      set_error(r, "bad_arg", bench ? "usage: bench <runs>" : "usage: arena <bytes>");
      return;
    }
    if (bench && (r->n < 1 || r->n > PTF_BENCH_MAX)) {
      set_error(r, "range", "bench runs must be 1 to 1000");
      return;
    }
    r->cmd = bench ? PTF_CMD_BENCH : PTF_CMD_ARENA;
    return;
  }
  if (CMD_IS("load")) {
    if (nargs != 2 || !parse_dec(a[0].s, a[0].n, &r->n) || a[1].n == 0 || (a[1].n & 1u)) {
      set_error(r, "bad_arg", "usage: load <offset> <hex bytes>");
      return;
    }
    if (a[1].n / 2 > PTF_LOAD_MAX) {
      set_error(r, "range", "load takes at most 128 bytes");
      return;
    }
    for (uint32_t k = 0; k < a[1].n; k += 2) {
      int hi = hex_val(a[1].s[k]), lo = hex_val(a[1].s[k + 1]);
      if (hi < 0 || lo < 0) {
        set_error(r, "bad_arg", "load data must be hex digits");
        return;
      }
      r->data[k / 2] = (uint8_t)((hi << 4) | lo);
    }
    r->data_len = a[1].n / 2;
    if (r->n > input_bytes || r->data_len > input_bytes - r->n) {
      set_error(r, "range", "load goes past the end of the input tensor");
      return;
    }
    r->cmd = PTF_CMD_LOAD;
    return;
  }
  if (CMD_IS("infer") || CMD_IS("auto")) {
    int is_auto = CMD_IS("auto");
    if (nargs != 2 || !parse_dec(a[0].s, a[0].n, &r->n) || a[1].n != 8) {
      set_error(r, "bad_arg", is_auto ? "usage: auto <length> <crc32 as 8 hex digits>"
                                      : "usage: infer <length> <crc32 as 8 hex digits>");
      return;
    }
    uint32_t crc = 0;
    for (uint32_t k = 0; k < 8; k++) {
      int v = hex_val(a[1].s[k]);
      if (v < 0) {
        set_error(r, "bad_arg", is_auto ? "auto crc32 must be 8 hex digits" : "infer crc32 must be 8 hex digits");
        return;
      }
      crc = (crc << 4) | (uint32_t)v;
    }
    r->crc = crc;
    if (r->n != input_bytes) {
      set_error(r, "range", is_auto ? "auto length must equal the input tensor's size"
                                    : "infer length must equal the input tensor's size");
      return;
    }
    r->cmd = is_auto ? PTF_CMD_AUTO : PTF_CMD_INFER;
    return;
  }
  if (CMD_IS("layer")) {
    uint32_t len = 0, crc = 0;
    int ok = nargs == 4 && parse_dec(a[0].s, a[0].n, &r->n) && parse_dec(a[1].s, a[1].n, &r->offset) &&
             parse_dec(a[2].s, a[2].n, &len) && a[3].n == 8;
    for (uint32_t k = 0; ok && k < 8; k++) {
      int v = hex_val(a[3].s[k]);
      if (v < 0) ok = 0;
      crc = (crc << 4) | (uint32_t)v;
    }
    if (!ok) {
      set_error(r, "bad_arg", "usage: layer <op index> <byte offset> <input length> <input crc32 as 8 hex digits>");
      return;
    }
    if (len != input_bytes) {
      set_error(r, "range", "layer input length must equal the input tensor's size");
      return;
    }
    r->crc = crc;
    r->cmd = PTF_CMD_LAYER;  // the firmware checks the op index and the offset against the model
    return;
  }
#undef CMD_IS
  set_error(r, "unknown_cmd",
            "unknown command (info, mem, bench, profile, golden, load, infer, arena, variants, select, policy, auto, "
            "cores, layer)");
}

// ------------------------------------------------------------------------------ replies
_Static_assert(PTF_JSON_DEPTH <= 16, "ptf_json_t.nest has one bit per level");
static const char kMsgTooLong[] = "(message too long for the reply)";

static uint32_t add_sat(uint32_t a, uint32_t b) { return a > UINT32_MAX - b ? UINT32_MAX : a + b; }

// Frame bytes into the chunk; a full chunk goes out.
static void emit(ptf_json_t* j, const char* s, uint32_t n) {
  const ptf_out_t* o = j->out;
  uint32_t size = o->chunk_size > 0xFFFFu ? 0xFFFFu : o->chunk_size;
  if (size == 0) {  // no chunk buffer: every piece goes out as it comes
    if (n > 0) o->write(o->ctx, s, n);
    return;
  }
  while (n > 0) {
    uint32_t k = size - j->fill;
    if (k > n) k = n;
    memcpy(o->chunk + j->fill, s, k);
    j->fill = (uint16_t)(j->fill + k);
    s += k;
    n -= k;
    if (j->fill == size) {
      o->write(o->ctx, o->chunk, j->fill);
      j->fill = 0;
    }
  }
}

// Payload bytes: counted, checksummed and sent (only counted when measuring).
static void put(ptf_json_t* j, const char* s, uint32_t n) {
  j->len += n;
  if (j->out->write == NULL) return;
  j->crc = ptf_crc32(j->crc, s, n);
  emit(j, s, n);
}

static void puts_(ptf_json_t* j, const char* s) { put(j, s, (uint32_t)strlen(s)); }

// A string as JSON writes it, quotes included: `"` and `\` escaped, bytes outside printable ASCII as \u00XX.
static uint32_t escaped_len(const char* s) {
  uint32_t n = 2;
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    n = add_sat(n, (c == '"' || c == '\\') ? 2u : (c < 0x20 || c > 0x7e) ? 6u : 1u);
  }
  return n;
}

static int plain(unsigned char c) { return c >= 0x20 && c <= 0x7e && c != '"' && c != '\\'; }

static void put_escaped(ptf_json_t* j, const char* s) {
  puts_(j, "\"");
  while (*s) {
    uint32_t run = 0;
    while (plain((unsigned char)s[run])) run++;
    if (run > 0) {  // bytes that need no escape go out together
      put(j, s, run);
      s += run;
      continue;
    }
    unsigned char c = (unsigned char)*s++;
    char esc[8];
    if (c == '"' || c == '\\') {
      esc[0] = '\\';
      esc[1] = (char)c;
      put(j, esc, 2);
    } else {
      snprintf(esc, sizeof esc, "\\u%04x", c);
      put(j, esc, 6);
    }
  }
  puts_(j, "\"");
}

// Start an element of the innermost array/object whose value takes `value_len` bytes: 1 when it fits
// the limit and its comma and key are written (the caller writes the value), 0 when it is left out.
// Either way it counts, so a cut reply knows the size it would have had.
static int element(ptf_json_t* j, const char* key, uint32_t value_len) {
  uint32_t n = add_sat(add_sat(j->first ? 0u : 1u, key ? add_sat(escaped_len(key), 1u) : 0u), value_len);
  int keep = 0;
  if (!j->done) {
    if (!j->cut && n > j->out->limit - (j->len < j->out->limit ? j->len : j->out->limit)) j->cut = 1;
    if (j->cut) {
      j->dropped = add_sat(j->dropped, n);
    } else {
      if (!j->first) puts_(j, ",");
      if (key) {
        put_escaped(j, key);
        puts_(j, ":");
      }
      keep = 1;
    }
  }
  j->first = 0;
  return keep;
}

void ptf_json_int(ptf_json_t* j, const char* key, long long value) {
  char num[24];
  int n = snprintf(num, sizeof num, "%lld", value);
  if (element(j, key, (uint32_t)n)) put(j, num, (uint32_t)n);
}

void ptf_json_bool(ptf_json_t* j, const char* key, int value) {
  const char* text = value ? "true" : "false";
  if (element(j, key, (uint32_t)strlen(text))) puts_(j, text);
}

void ptf_json_str(ptf_json_t* j, const char* key, const char* value) {
  if (!value) value = "";
  if (element(j, key, escaped_len(value))) put_escaped(j, value);
}

void ptf_json_hex(ptf_json_t* j, const char* key, const uint8_t* data, uint32_t n) {
  static const char digits[] = "0123456789abcdef";
  if (!element(j, key, add_sat(add_sat(n, n), 2u))) return;
  puts_(j, "\"");
  char text[32];
  for (uint32_t i = 0; i < n;) {
    uint32_t k = 0;
    for (; k < sizeof text && i < n; i++) {
      text[k++] = digits[data[i] >> 4];
      text[k++] = digits[data[i] & 15];
    }
    put(j, text, k);
  }
  puts_(j, "\"");
}

void ptf_json_open(ptf_json_t* j, const char* key, char bracket) {
  if (j->depth >= PTF_JSON_DEPTH) j->cut = 1;  // deeper than the writer can close: left out
  if (element(j, key, 1)) {
    put(j, &bracket, 1);
    if (bracket == '{') j->nest = (uint16_t)(j->nest | (1u << j->depth));
    j->depth++;
  }
  j->first = 1;
}

void ptf_json_close(ptf_json_t* j, char bracket) {
  j->first = 1;  // a closing bracket takes no comma; after it, the next element does
  if (element(j, NULL, 1)) {
    put(j, &bracket, 1);
    if (j->depth > 1) {
      j->depth--;
      j->nest = (uint16_t)(j->nest & ~(1u << j->depth));
    }
  }
}

void ptf_json_begin(ptf_json_t* j, const ptf_out_t* out, int ok, const char* cmd, const ptf_request_t* req) {
  memset(j, 0, sizeof *j);
  j->out = out;
  j->nest = 1;  // level 0, the payload, is an object
  j->depth = 1;
  if (out->write) emit(j, "$", 1);
  // The header is always written, whatever the limit: a cut reply still says what it answers.
  puts_(j, "{\"ok\":");
  puts_(j, ok ? "true" : "false");
  puts_(j, ",\"cmd\":");
  put_escaped(j, cmd ? cmd : "?");
  if (req && req->has_id) {
    char num[16];
    int n = snprintf(num, sizeof num, ",\"id\":%lu", (unsigned long)req->id);
    put(j, num, (uint32_t)n);
  }
}

// `*<crc32>\n` and the last chunk.
static void finish(ptf_json_t* j) {
  const ptf_out_t* o = j->out;
  j->done = 1;
  if (o->write == NULL) return;
  char tail[16];
  int n = snprintf(tail, sizeof tail, "*%08lx\n", (unsigned long)j->crc);
  emit(j, tail, (uint32_t)n);
  if (j->fill > 0) o->write(o->ctx, o->chunk, j->fill);
  j->fill = 0;
}

void ptf_json_end_error(ptf_json_t* j, const char* err, const char* msg) {
  if (j->done) return;
  if (!err) err = "?";
  if (!msg) msg = "";
  if (add_sat(escaped_len(err), escaped_len(msg)) > PTF_TAIL_TEXT_MAX) msg = kMsgTooLong;
  if (add_sat(escaped_len(err), escaped_len(msg)) > PTF_TAIL_TEXT_MAX) err = "range";
  for (uint32_t level = j->depth; level-- > 1;) puts_(j, (j->nest >> level) & 1u ? "}" : "]");
  j->depth = 1;
  puts_(j, ",\"ok\":false,\"err\":");
  put_escaped(j, err);
  puts_(j, ",\"msg\":");
  put_escaped(j, msg);
  puts_(j, "}");
  finish(j);
}

void ptf_json_end(ptf_json_t* j) {
  if (j->done) return;
  j->first = 1;
  if (element(j, NULL, 1)) {
    puts_(j, "}");
    finish(j);
    return;
  }
  char msg[128];
  snprintf(msg, sizeof msg, "reply of %lu bytes is over the %lu-byte limit: the fields after byte %lu were left out",
           (unsigned long)add_sat(j->len, j->dropped), (unsigned long)j->out->limit, (unsigned long)j->len);
  ptf_json_end_error(j, "range", msg);
}

static void error_payload(ptf_json_t* j, const ptf_out_t* out, const ptf_request_t* req, const char* err,
                          const char* msg) {
  ptf_json_begin(j, out, 0, req ? req->name : "?", req);
  ptf_json_str(j, "err", err);
  ptf_json_str(j, "msg", msg);
  j->first = 1;
  if (element(j, NULL, 1)) puts_(j, "}");
}

void ptf_error_reply(const ptf_out_t* out, const ptf_request_t* req, const char* err, const char* msg) {
  ptf_out_t o = *out;
  ptf_json_t j;
  o.write = NULL;  // measure first: nothing has gone out yet when the message must be replaced
  error_payload(&j, &o, req, err, msg);
  o = *out;
  if (j.cut) {
    msg = kMsgTooLong;
    o.limit = UINT32_MAX;  // never cut an error: the short message goes out whatever the limit
  }
  error_payload(&j, &o, req, err, msg);
  finish(&j);
}
