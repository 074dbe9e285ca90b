// See pk_multicore.h.
#include "pk_multicore.h"

#if defined(PICOTFLM_CORES) && PICOTFLM_CORES == 2

#include "hardware/sync.h"

// The SDK's core 1 stack (PICO_CORE1_STACK_SIZE, section .stack1 at the top of SCRATCH_X), which
// multicore_launch_core1 uses, painted before the first job so that its peak can be read back.
extern char __StackOneBottom[], __StackOneTop[];
#define PK_STACK1_BOTTOM ((uintptr_t)__StackOneBottom)
#define PK_STACK1_TOP ((uintptr_t)__StackOneTop)

static const uint32_t kPaint = 0xC0FFEE11u;
static volatile uint32_t g_jobs;
static int g_launched;

// Paints core 1's stack below `top`.
static void paint_stack1(uintptr_t top) {
    for (uintptr_t a = PK_STACK1_BOTTOM; a < top; a += 4) *(volatile uint32_t*)a = kPaint;
}

#if !defined(PICOTFLM_CORE1_ON_CORE0)

#include "pico/multicore.h"

// Written by core 0 before the FIFO word that starts the job, read by core 1 after it.
static void (*volatile g_fn)(void*);
static void* volatile g_arg;

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

static int g_enabled = 1;

void pk_core1_set_enabled(int on) { g_enabled = on != 0; }
int pk_core1_enabled(void) { return g_enabled; }

static void launch(void) {
    multicore_reset_core1();
    // All but its top 64 bytes (the bootrom's core 1 wait loop and the words multicore_launch_core1
    // puts there).
    paint_stack1(PK_STACK1_TOP - 64);
    multicore_launch_core1(core1_loop);
    g_launched = 1;
}

void pk_core1_start(void (*fn)(void*), void* arg) {
    if (!g_enabled) {  // one core: core 1's share runs here, now; pk_core1_wait has nothing to wait for
        fn(arg);
        return;
    }
    if (!g_launched) launch();
    g_fn = fn;
    g_arg = arg;
    __dmb();
    multicore_fifo_push_blocking(0);
}

void pk_core1_wait(void) {
    if (!g_enabled) return;
    (void)multicore_fifo_pop_blocking();
    __dmb();
}

#else  // PICOTFLM_CORE1_ON_CORE0

// The emulator image with the board image's splits (build.emulate_core1): rp2040js runs core 0 only,
// so each job for core 1 runs on core 0 at once (core 0's own share then follows: the same outputs),
// but on core 1's stack, painted the same way, with interrupts off as core 1 has them. `mem` then
// reports how deep the code core 1 runs goes, measured instead of estimated.

// fn(arg) with the stack pointer at `top` (8-byte aligned), then back on the caller's stack.
__attribute__((noinline)) static void run_on_stack(void (*fn)(void*), void* arg, uintptr_t top) {
    register void* a0 __asm__("r0") = arg;
    __asm__ volatile(
        "mov r4, sp\n\t"
        "mov sp, %[top]\n\t"
        "push {r4, r5}\n\t"
        "blx %[fn]\n\t"
        "pop {r4, r5}\n\t"
        "mov sp, r4\n\t"
        : "+r"(a0)
        : [fn] "r"(fn), [top] "r"(top)
        : "r1", "r2", "r3", "r4", "r5", "r12", "lr", "memory", "cc");
}

void pk_core1_start(void (*fn)(void*), void* arg) {
    if (!g_launched) {
        paint_stack1(PK_STACK1_TOP);
        g_launched = 1;
    }
    const uint32_t irq = save_and_disable_interrupts();
    run_on_stack(fn, arg, PK_STACK1_TOP & ~(uintptr_t)7u);
    restore_interrupts(irq);
    g_jobs = g_jobs + 1;
}

void pk_core1_wait(void) {}

void pk_core1_set_enabled(int on) { (void)on; }
int pk_core1_enabled(void) { return 1; }

#endif

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
void pk_core1_set_enabled(int on) { (void)on; }
int pk_core1_enabled(void) { return 0; }
uint32_t pk_core1_jobs(void) { return 0; }
uint32_t pk_core1_stack_peak(void) { return 0; }
uint32_t pk_core1_stack_size(void) { return 0; }

#endif
