// See flash_params.h.
#include "flash_params.h"

namespace picotflm {
namespace {
int g_used = 0;
int g_copied = 0;
}  // namespace

int FlashParamsUsed() { return g_used; }
int FlashParamsCopied() { return g_copied; }
void ResetFlashParams() { g_used = g_copied = 0; }
void CountFlashParams(bool used) { (used ? g_used : g_copied)++; }

}  // namespace picotflm
