// Several model variants in one firmware, one set up at a time in the one arena: `variants`,
// `select`, and the automatic policy (`policy`, `auto`), which runs variant 0 first and the next one
// while the top-1 confidence (or top-1 minus top-2) of the output is below the threshold.
#ifndef PICOTFLM_APP_SWITCHING_H_
#define PICOTFLM_APP_SWITCHING_H_

#include <stdint.h>

#include "model_data.h"
#include "protocol.h"

namespace app {

constexpr bool kSwitching = PICOTFLM_VARIANT_COUNT > 1;

void cmd_variants();
void cmd_select(uint32_t v);
void cmd_policy(const ptf_request_t& r);
void cmd_auto(const ptf_request_t& r);

}  // namespace app

#endif  // PICOTFLM_APP_SWITCHING_H_
