// See reply.h.
#include "app/reply.h"

#include "board.h"

namespace app {

ptf_request_t g_req;

namespace {

void write_chunk(void*, const char* data, uint32_t len) { board_write(data, len); }
constexpr uint32_t kReplyChunk = 64;
char g_reply_chunk[kReplyChunk];
const ptf_out_t g_out = {write_chunk, nullptr, g_reply_chunk, kReplyChunk, PTF_PAYLOAD_MAX};
// The reply begun and not yet ended.
ptf_json_t* g_open = nullptr;

}  // namespace

// Not inlined: the commands' stack frames stay small (golden's holds its reply during every Invoke).
__attribute__((noinline)) void send(ptf_json_t* j) {
  ptf_json_end(j);
  g_open = nullptr;
}

__attribute__((noinline)) void send_error(const char* err, const char* msg) {
  if (g_open != nullptr) {
    ptf_json_end_error(g_open, err, msg);
    g_open = nullptr;
    return;
  }
  ptf_error_reply(&g_out, &g_req, err, msg);
}

void begin(ptf_json_t* j, const char* cmd) {
  ptf_json_begin(j, &g_out, 1, cmd, &g_req);
  g_open = j;
}

}  // namespace app
