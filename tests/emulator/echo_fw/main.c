// echo_fw: answers every line received on UART0 (stdio) with "<n> <line>\n", n counting lines from 1.
// Two commands besides the echo, used by the emulator tests:
//   "time"     -> "<n> time <time_us_64()>"   (the emulated clock advances)
//   "spin <k>" -> "<n> spin <k> <elapsed us>"  (a busy loop of k iterations, to measure emulator speed)
//   "panic"    -> panic(): prints "*** PANIC ***" and stops at a breakpoint (the emulator reports a crash)
//   "rom"      -> calls into the bootrom region, which the emulator does not have
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pico/stdlib.h"

#define LINE_MAX 512

static char line[LINE_MAX];

int main(void) {
    stdio_init_all();
    unsigned count = 0;
    size_t len = 0;
    for (;;) {
        int c = getchar_timeout_us(1000000);
        if (c == PICO_ERROR_TIMEOUT) {
            continue;
        }
        if (c == '\r') {
            continue;
        }
        if (c != '\n') {
            if (len < LINE_MAX - 1) {
                line[len++] = (char)c;
            }
            continue;
        }
        line[len] = '\0';
        len = 0;
        count++;
        if (strcmp(line, "time") == 0) {
            printf("%u time %llu\n", count, (unsigned long long)time_us_64());
        } else if (strncmp(line, "spin ", 5) == 0) {
            unsigned long k = strtoul(line + 5, NULL, 10);
            uint64_t t0 = time_us_64();
            for (volatile unsigned long i = 0; i < k; i++) {
            }
            printf("%u spin %lu %llu\n", count, k, (unsigned long long)(time_us_64() - t0));
        } else if (strcmp(line, "panic") == 0) {
            panic("echo_fw asked to panic");
        } else if (strcmp(line, "rom") == 0) {
            ((void (*)(void))0x00000101u)();
        } else {
            printf("%u %s\n", count, line);
        }
        fflush(stdout);
    }
}
