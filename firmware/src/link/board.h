// What the firmware measures about the RP2040 itself: cycles, time, stack, heap, static RAM,
// and the serial line. Everything here is read from the hardware or the linker, never estimated.
#ifndef PICOTFLM_BOARD_H_
#define PICOTFLM_BOARD_H_
#include <stdint.h>

void board_init(void);                 // stdio, SysTick cycle counter
uint64_t board_cycles(void);           // core clock cycles since board_init (SysTick + wrap count)
uint64_t board_time_us(void);          // microseconds since boot (timer peripheral)
uint32_t board_clock_hz(void);         // the core clock
int board_read_byte(uint32_t timeout_us);  // a byte from the host, or -1
void board_write(const char* data, uint32_t len);

void board_stack_paint(void);          // call first thing: fills the free stack with a pattern
uint32_t board_stack_size(void);       // the linker's main stack size
uint32_t board_stack_peak(void);       // deepest use since painting
uint32_t board_data_bytes(void);       // .data (incl. code copied to RAM)
uint32_t board_bss_bytes(void);        // .bss (incl. the tensor arena)
uint32_t board_heap_used(void);        // heap taken from the system (sbrk)
#endif
