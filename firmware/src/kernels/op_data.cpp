// See op_data.h.
#include "op_data.h"

namespace picotflm {
namespace {
int g_in_flash = 0;
int g_in_arena = 0;
}  // namespace

OpDataTables g_op_data = {nullptr, 0, nullptr, 0, nullptr, 0, nullptr, 0};

void UseOpData(const OpDataTables& tables) { g_op_data = tables; }
int OpDataInFlash() { return g_in_flash; }
int OpDataInArena() { return g_in_arena; }
void ResetOpDataCounts() { g_in_flash = g_in_arena = 0; }
void CountOpData(bool in_flash) { (in_flash ? g_in_flash : g_in_arena)++; }

}  // namespace picotflm
