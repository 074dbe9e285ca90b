// The host's requests (docs/protocol.md), one function each, and the dispatch of a parsed request.
// The switching commands are in switching.h, `profile` in profile.h.
#ifndef PICOTFLM_APP_COMMANDS_H_
#define PICOTFLM_APP_COMMANDS_H_

#include <stdint.h>

#include "protocol.h"

namespace app {

// Answers one parsed request.
void handle(const ptf_request_t& r);

// Where `load` writes the frame: the input tensor, or with several variants a buffer of its own.
uint8_t* frame_buffer();

}  // namespace app

#endif  // PICOTFLM_APP_COMMANDS_H_
