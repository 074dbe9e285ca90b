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
#undef CMD_IS
  set_error(r, "unknown_cmd", "unknown command (info, mem, bench, profile, golden, load, infer, arena, variants, select, policy, auto)");
}

// ------------------------------------------------------------------------------ replies
static void put(ptf_json_t* j, const char* s, uint32_t n) {
  if (j->overflow || j->len + n + 1 > j->cap) {
    j->overflow = 1;
    return;
  }
  memcpy(j->buf + j->len, s, n);
  j->len += n;
  j->buf[j->len] = '\0';
}

static void puts_(ptf_json_t* j, const char* s) { put(j, s, (uint32_t)strlen(s)); }

static void put_escaped(ptf_json_t* j, const char* s) {
  puts_(j, "\"");
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    char esc[8];
    if (c == '"' || c == '\\') {
      esc[0] = '\\';
      esc[1] = (char)c;
      put(j, esc, 2);
    } else if (c < 0x20 || c > 0x7e) {
      snprintf(esc, sizeof esc, "\\u%04x", c);
      put(j, esc, 6);
    } else {
      put(j, (const char*)&c, 1);
    }
  }
  puts_(j, "\"");
}

void ptf_json_key(ptf_json_t* j, const char* key) {
  if (!j->first) puts_(j, ",");
  j->first = 0;
  if (key) {
    put_escaped(j, key);
    puts_(j, ":");
  }
}

void ptf_json_raw(ptf_json_t* j, const char* text) { puts_(j, text); }

void ptf_json_open(ptf_json_t* j, const char* key, char bracket) {
  ptf_json_key(j, key);
  put(j, &bracket, 1);
  j->first = 1;
}

void ptf_json_close(ptf_json_t* j, char bracket) {
  put(j, &bracket, 1);
  j->first = 0;
}

void ptf_json_begin(ptf_json_t* j, char* buf, uint32_t cap, int ok, const char* cmd, const ptf_request_t* req) {
  j->buf = buf;
  j->cap = cap;
  j->len = 0;
  j->overflow = 0;
  j->first = 1;
  if (cap) buf[0] = '\0';
  puts_(j, "{");
  ptf_json_bool(j, "ok", ok);
  ptf_json_str(j, "cmd", cmd);
  if (req && req->has_id) ptf_json_int(j, "id", req->id);
}

void ptf_json_int(ptf_json_t* j, const char* key, long long value) {
  char num[24];
  ptf_json_key(j, key);
  snprintf(num, sizeof num, "%lld", value);
  puts_(j, num);
}

void ptf_json_bool(ptf_json_t* j, const char* key, int value) {
  ptf_json_key(j, key);
  puts_(j, value ? "true" : "false");
}

void ptf_json_str(ptf_json_t* j, const char* key, const char* value) {
  ptf_json_key(j, key);
  put_escaped(j, value ? value : "");
}

void ptf_json_hex(ptf_json_t* j, const char* key, const uint8_t* data, uint32_t n) {
  static const char digits[] = "0123456789abcdef";
  ptf_json_key(j, key);
  puts_(j, "\"");
  for (uint32_t i = 0; i < n; i++) {
    char two[2] = {digits[data[i] >> 4], digits[data[i] & 15]};
    put(j, two, 2);
  }
  puts_(j, "\"");
}

void ptf_json_end(ptf_json_t* j) { puts_(j, "}"); }

uint32_t ptf_frame(const char* payload, uint32_t len, char* out, uint32_t cap) {
  if (cap < 12 || len > cap - 12) return 0;
  uint32_t crc = ptf_crc32(0, payload, len);
  memmove(out + 1, payload, len);  // the payload may already sit at out + 1
  out[0] = '$';
  snprintf(out + 1 + len, cap - 1 - len, "*%08lx\n", (unsigned long)crc);
  return len + 11;
}

static void error_payload(ptf_json_t* j, char* buf, uint32_t cap, const ptf_request_t* req, const char* err,
                          const char* msg) {
  ptf_json_begin(j, buf, cap, 0, req ? req->name : "?", req);
  ptf_json_str(j, "err", err);
  ptf_json_str(j, "msg", msg);
  ptf_json_end(j);
}

uint32_t ptf_error_reply(const ptf_request_t* req, const char* err, const char* msg, char* out, uint32_t cap) {
  if (cap < 12) return 0;
  // The payload is built at out + 1 with room left for "*<crc>\n" and the terminating NUL.
  ptf_json_t j;
  error_payload(&j, out + 1, cap - 11, req, err, msg);
  if (j.overflow) error_payload(&j, out + 1, cap - 11, req, err, "(message too long for the reply)");
  if (j.overflow) return 0;
  return ptf_frame(out + 1, j.len, out, cap);
}
