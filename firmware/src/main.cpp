// picotflm firmware: set up the rendered model once, validate it, then answer the host's requests
// (docs/protocol.md) with what the board measures about itself. The parts: src/app (setup, commands,
// switching, profile, replies, TFLM's log, binary info), src/kernels (picotflm's TFLM kernels), the
// request parser (protocol.c) and the board (board.cpp).
#include "app/commands.h"
#include "app/reply.h"
#include "app/setup.h"
#include "board.h"
#include "model_config.h"
#include "protocol.h"

namespace {
ptf_line_t g_line;
}  // namespace

int main() {
  board_stack_paint();
  board_init();
  app::register_ops();
  app::setup(PICOTFLM_ARENA_SIZE);
  ptf_line_reset(&g_line);
  for (;;) {
    int c = board_read_byte(100000);
    if (c < 0) continue;
    if (ptf_line_feed(&g_line, c)) {
      ptf_parse(g_line.buf, g_line.len, g_line.overflow, PICOTFLM_INPUT_BYTES, &app::g_req);
      app::handle(app::g_req);
      ptf_line_reset(&g_line);
    }
  }
}
