// Replies (docs/protocol.md): each streams out through one small chunk buffer ('$', the JSON payload
// as it is built, then "*<crc32>\n"): no reply is ever held whole in RAM. Every begin() ends in send()
// or send_error().
#ifndef PICOTFLM_APP_REPLY_H_
#define PICOTFLM_APP_REPLY_H_

#include "protocol.h"

namespace app {

// The request being answered (main.cpp parses each line into it).
extern ptf_request_t g_req;

// Begins the reply to command `cmd` in `j`.
void begin(ptf_json_t* j, const char* cmd);
// Ends the reply begun in `j` (a reply past the payload limit ends as error `range`).
void send(ptf_json_t* j);
// An error reply; when a reply has begun (an error found while it is being written, e.g. golden's
// Invoke), that reply ends as this error, whose first bytes may have gone out.
void send_error(const char* err, const char* msg);

}  // namespace app

#endif  // PICOTFLM_APP_REPLY_H_
