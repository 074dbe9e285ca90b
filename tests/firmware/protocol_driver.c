// Host test driver for firmware/src/protocol.c: reads bytes on stdin, feeds them to the line
// assembler and parser exactly as the firmware does, and prints one result line per request.
// With argument "frame", frames each stdin line as a reply payload instead; with "error", sends each
// stdin line as the message of an error reply built into a buffer of argv[2] bytes; with "nested",
// prints one reply with an array of objects and an array of hex strings.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

int main(int argc, char** argv) {
  static ptf_line_t line;
  static ptf_request_t req;
  char out[4096];
  if (argc > 1 && strcmp(argv[1], "frame") == 0) {
    char buf[2048];
    while (fgets(buf, sizeof buf, stdin)) {
      size_t n = strcspn(buf, "\n");
      uint32_t m = ptf_frame(buf, (uint32_t)n, out, sizeof out);
      fwrite(out, 1, m, stdout);
    }
    return 0;
  }
  if (argc > 2 && strcmp(argv[1], "error") == 0) {
    char msg[4096];
    uint32_t cap = (uint32_t)atoi(argv[2]);
    if (cap > sizeof out) return 2;
    while (fgets(msg, sizeof msg, stdin)) {
      msg[strcspn(msg, "\n")] = '\0';
      ptf_parse("info @42", 8, 0, 6912, &req);
      uint32_t m = ptf_error_reply(&req, "setup", msg, out, cap);
      if (m == 0) printf("none\n");
      fwrite(out, 1, m, stdout);
    }
    return 0;
  }
  if (argc > 1 && strcmp(argv[1], "nested") == 0) {
    static const uint8_t bytes[3] = {0x00, 0x7f, 0xff};
    char payload[512];
    ptf_json_t j;
    ptf_json_begin(&j, payload, sizeof payload, 1, "profile", NULL);
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
    fwrite(out, 1, ptf_frame(payload, j.len, out, sizeof out), stdout);
    return 0;
  }
  ptf_line_reset(&line);
  int c;
  while ((c = getchar()) != EOF) {
    if (!ptf_line_feed(&line, c)) continue;
    ptf_parse(line.buf, line.len, line.overflow, 6912, &req);
    if (req.cmd == PTF_CMD_NONE) {
      printf("none\n");
    } else if (req.cmd == PTF_CMD_ERROR) {
      uint32_t m = ptf_error_reply(&req, req.err, req.msg, out, sizeof out);
      fwrite(out, 1, m, stdout);
    } else {
      ptf_json_t j;
      char payload[1024];
      ptf_json_begin(&j, payload, sizeof payload, 1, req.name, &req);
      ptf_json_int(&j, "code", req.cmd);
      ptf_json_int(&j, "n", req.n);
      ptf_json_int(&j, "crc", req.crc);
      if (req.cmd == PTF_CMD_POLICY) ptf_json_int(&j, "threshold", req.threshold);
      ptf_json_hex(&j, "data", req.data, req.data_len);
      ptf_json_end(&j);
      uint32_t m = ptf_frame(payload, j.len, out, sizeof out);
      fwrite(out, 1, m, stdout);
    }
    ptf_line_reset(&line);
  }
  return 0;
}
