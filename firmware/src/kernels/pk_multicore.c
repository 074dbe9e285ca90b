// See pk_multicore.h.
#include "pk_multicore.h"

#if defined(PICOTFLM_CORES) && PICOTFLM_CORES == 2

#include "hardware/sync.h"
#include "pico/multicore.h"

// The SDK's core 1 stack (PICO_CORE1_STACK_SIZE, section .stack1 at the top of SCRATCH_X), which
// multicore_launch_core1 uses.
extern char __StackOneBottom[], __StackOneTop[];
#define PK_STACK1_BOTTOM ((uintptr_t)__StackOneBottom)
#define PK_STACK1_TOP ((uintptr_t)__StackOneTop)

static const uint32_t kPaint = 0xC0FFEE11u;

// Written by core 0 before the FIFO word that starts the job, read by core 1 after it.
static void (*volatile g_fn)(void*);
static void* volatile g_arg;
static volatile uint32_t g_jobs;
static int g_launched;

static void core1_loop(void) {
    for (;;) {
        (void)multicore_fifo_pop_blocking();
        __dmb();
        g_fn(g_arg);
        g_jobs = g_jobs + 1;
        __dmb();
        multicore_fifo_push_blocking(1);
    }
}

static void launch(void) {
    multicore_reset_core1();
    // Paint the stack, all but its top 64 bytes (the bootrom's core 1 wait loop and the words
    // multicore_launch_core1 puts there).
    for (uintptr_t a = PK_STACK1_BOTTOM; a < PK_STACK1_TOP - 64; a += 4) *(volatile uint32_t*)a = kPaint;
    multicore_launch_core1(core1_loop);
    g_launched = 1;
}

void pk_core1_start(void (*fn)(void*), void* arg) {
    if (!g_launched) launch();
    g_fn = fn;
    g_arg = arg;
    __dmb();
    multicore_fifo_push_blocking(0);
}

void pk_core1_wait(void) {
    (void)multicore_fifo_pop_blocking();
    __dmb();
}

uint32_t pk_core1_jobs(void) { return g_jobs; }

uint32_t pk_core1_stack_size(void) { return (uint32_t)(PK_STACK1_TOP - PK_STACK1_BOTTOM); }

uint32_t pk_core1_stack_peak(void) {
    if (!g_launched) return 0;
    uintptr_t a = PK_STACK1_BOTTOM;
    while (a < PK_STACK1_TOP && *(volatile const uint32_t*)a == kPaint) a += 4;
    return (uint32_t)(PK_STACK1_TOP - a);
}

#else  // one core: nothing runs on core 1

void pk_core1_start(void (*fn)(void*), void* arg) { fn(arg); }
void pk_core1_wait(void) {}
uint32_t pk_core1_jobs(void) { return 0; }
uint32_t pk_core1_stack_peak(void) { return 0; }
uint32_t pk_core1_stack_size(void) { return 0; }

#endif
