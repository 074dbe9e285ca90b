// TFLM's log (MicroPrintf) goes to tflm_log.cpp instead of the serial line, which carries only framed
// replies: the first message since the last clear is kept, so that a failed setup can say why
// ("Failed to resize buffer. Requested: 11520, available 11128, missing: 392").
#ifndef PICOTFLM_APP_TFLM_LOG_H_
#define PICOTFLM_APP_TFLM_LOG_H_

namespace app {

// Forgets the kept message.
void tflm_log_clear();
// The kept message, or "" when TFLM logged nothing since the last clear.
const char* tflm_log();

}  // namespace app

#endif  // PICOTFLM_APP_TFLM_LOG_H_
