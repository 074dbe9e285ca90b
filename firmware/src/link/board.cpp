#include "board.h"

#include <unistd.h>

#include "hardware/clocks.h"
#include "hardware/structs/scb.h"
#include "hardware/structs/systick.h"
#include "hardware/sync.h"
#include "pico/stdlib.h"

extern "C" {
extern char __StackTop, __StackBottom, __end__, __scratch_y_end__;
extern char __data_start__, __data_end__, __bss_start__, __bss_end__;
}

static const uint32_t kPaint = 0xC0FFEE11u;
static volatile uint32_t g_systick_wraps;

extern "C" void isr_systick(void) { g_systick_wraps++; }

void board_init(void) {
  stdio_init_all();
  systick_hw->csr = 0;
  systick_hw->rvr = 0x00FFFFFF;
  systick_hw->cvr = 0;
  systick_hw->csr = 0x7;  // processor clock, interrupt on wrap, enabled
}

uint64_t board_cycles(void) {
  uint32_t irq = save_and_disable_interrupts();
  uint32_t wraps = g_systick_wraps;
  uint32_t value = systick_hw->cvr;
  if (scb_hw->icsr & M0PLUS_ICSR_PENDSTSET_BITS) {  // wrapped, handler not run yet
    value = systick_hw->cvr;
    wraps++;
  }
  restore_interrupts(irq);
  return ((uint64_t)wraps << 24) + (0x00FFFFFFu - value);
}

uint64_t board_time_us(void) { return time_us_64(); }

uint32_t board_clock_hz(void) { return clock_get_hz(clk_sys); }

int board_read_byte(uint32_t timeout_us) {
  int c = getchar_timeout_us(timeout_us);
  return c < 0 ? -1 : c;
}

// Straight to the stdio drivers (UART or USB CDC): exactly these bytes, no "\n" -> "\r\n", and no
// newlib stdout buffer taken from the heap.
void board_write(const char* data, uint32_t len) {
  stdio_put_string(data, (int)len, false, false);
  stdio_flush();
}

// The main stack grows down from __StackTop at the top of the SCRATCH_Y bank (4 KB), whose lower part
// holds only the .scratch_y section (empty unless code is placed there). Paint from the end of that
// section up to just below the current stack pointer: a stack that outgrows its nominal 2 KB still
// shows up, down to the section's end.
static uintptr_t paint_bottom(void) { return ((uintptr_t)&__scratch_y_end__ + 3u) & ~(uintptr_t)3u; }

__attribute__((noinline)) void board_stack_paint(void) {
  volatile uint32_t* p = (volatile uint32_t*)paint_bottom();
  uintptr_t below_sp = (uintptr_t)__builtin_frame_address(0) - 64;
  while ((uintptr_t)p < below_sp) *p++ = kPaint;
}

uint32_t board_stack_size(void) { return (uint32_t)(&__StackTop - &__StackBottom); }

uint32_t board_stack_peak(void) {
  const uint32_t* p = (const uint32_t*)paint_bottom();
  const uint32_t* top = (const uint32_t*)&__StackTop;
  while (p < top && *p == kPaint) p++;
  return (uint32_t)((const char*)top - (const char*)p);
}

uint32_t board_data_bytes(void) { return (uint32_t)(&__data_end__ - &__data_start__); }

uint32_t board_bss_bytes(void) { return (uint32_t)(&__bss_end__ - &__bss_start__); }

uint32_t board_heap_used(void) {
  char* brk = (char*)sbrk(0);
  return brk > &__end__ ? (uint32_t)(brk - &__end__) : 0;
}
