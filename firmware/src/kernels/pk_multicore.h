// Core 1 of the RP2040, for the board image (PICOTFLM_CORES == 2): one owner for everything that
// runs there. Launched once, at the first job; then it waits for jobs in the SIO FIFO, runs each and
// answers in the FIFO. Core 0 starts a job, does its own share, then waits: one job at a time, so
// every op that hands work to core 1 (picotflm's convolutions, and in the board image pico-tflmicro's
// int8 matrix product through pk_core1_shim.h) finds it idle, whatever ran before.
// In the emulator image (one core) nothing here is compiled in and the kernels never call it; with
// build.emulate_core1 (PICOTFLM_CORE1_ON_CORE0) a job runs on core 0 at once, on core 1's stack.
#ifndef PICOTFLM_PK_MULTICORE_H_
#define PICOTFLM_PK_MULTICORE_H_

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Runs fn(arg) on core 1; returns at once. Call pk_core1_wait before the next start.
void pk_core1_start(void (*fn)(void*), void* arg);
// Blocks until the job started last has returned on core 1 (its writes are visible to core 0).
void pk_core1_wait(void);
// Whether jobs go to core 1 (the default in a two-core image) or run on core 0 at once, in the
// caller: `cores 1` measures the same image on one core. Always 0 in a one-core image.
void pk_core1_set_enabled(int on);
int pk_core1_enabled(void);
// Jobs core 1 has run since boot (0: never launched).
uint32_t pk_core1_jobs(void);
// Deepest use of core 1's stack since it was launched, in bytes (painted stack; 0 before launch),
// and that stack's size.
uint32_t pk_core1_stack_peak(void);
uint32_t pk_core1_stack_size(void);

#ifdef __cplusplus
}
#endif

#endif  // PICOTFLM_PK_MULTICORE_H_
