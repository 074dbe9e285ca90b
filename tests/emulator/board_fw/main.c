// board_fw: answers lines received over USB CDC stdio with "<n> <reply>\n" (n counts lines from 1).
// Commands (used by tests/emulator/test_board_mode.py):
//   <anything else>  -> "<n> <line>"                         echo
//   core1 <k>        -> "<n> core1 <sum of i*i, i<k> cpuid=<core 1's CPUID> launches=<n>"
//   reset1 <k>       -> multicore_reset_core1(), relaunch, then as core1: "<n> reset1 zero=<1: core 1 pushed 0> ..."
//   lockout          -> "<n> lockout paused=<0|1> resumed=<0|1>"  (core 1 frozen by multicore_lockout)
//   lockout0         -> "<n> lockout0 paused=<0|1> resumed=<0|1>" (the other way round: core 1 freezes core 0,
//                       whose SIO_IRQ_PROC0 handler takes the request)
//   systick          -> "<n> systick c0=<ticks> c1=<ticks> rvr0=<> rvr1=<>" (each core its own SysTick)
//   div              -> "<n> div same=<0|1> c0=<sum> c1=<sum>" (both cores use the hardware divider at once)
//   rom              -> "<n> rom P3=ok L3=ok ..." every served ROM function called and checked
//   speed <k>        -> "<n> speed <k> one=<us> two=<us> equal=<0|1>" (the same work on one core, then split)
//   alarm1           -> "<n> alarm1 fired=<n> core=<core the TIMER IRQ ran on>" (a hardware alarm claimed
//                       and enabled on core 1: its interrupt reaches core 1's NVIC only)
//   spin <k>         -> "<n> spin <k> total=<2k: both cores added k under one hardware spinlock>"
//   float            -> "<n> float <1000 * 1.5f * 2.25f>" (with the ROM's float: the emulator stops)
//   time             -> "<n> time <time_us_64()>"
//   replug           -> "<n> replug", then the device disconnects from USB and connects again (the host
//                       enumerates it anew); the next line is answered as usual
//   reboot           -> "<n> reboot", then watchdog_reboot(0, 0, 10): the chip resets, boots again and
//                       enumerates anew (line numbers start from 1 again)
//   sysreset         -> "<n> sysreset", then AIRCR.SYSRESETREQ: the same
//   why              -> "<n> why watchdog=<watchdog_caused_reboot()> enable=<watchdog_enable_caused_reboot()>"
//   unserved         -> calls ROM address 0x3000 (not served: the emulator stops)
//   bootsel          -> reset_usb_boot(0, 0) (the emulator stops as the board would leave for BOOTSEL)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hardware/exception.h"
#include "hardware/structs/scb.h"
#include "hardware/watchdog.h"
#include "hardware/flash.h"
#include "hardware/structs/systick.h"
#include "hardware/sync.h"
#include "hardware/timer.h"
#include "pico/bootrom.h"
#include "pico/multicore.h"
#include "pico/stdlib.h"
#include "tusb.h"

#define LINE_MAX 256

enum { CMD_SQUARES = 1, CMD_CPUID, CMD_LOCKOUT, CMD_SYSTICK, CMD_DIV, CMD_WORK, CMD_ALARM, CMD_SPIN, CMD_LOCKOUT0 };

static volatile uint32_t victim_counter;
static volatile uint32_t victim_seen[3];
static volatile bool victim_done, victim_released;

static volatile uint32_t alarm_fired;
static volatile uint32_t alarm_core = 0xff;
static volatile uint32_t shared_counter;
static spin_lock_t *counter_lock;

static void alarm_callback(uint alarm_num) {
    (void)alarm_num;
    alarm_fired++;
    alarm_core = get_core_num();
}

static void __attribute__((noinline)) add_locked(uint32_t k) {
    for (uint32_t i = 0; i < k; i++) {
        uint32_t save = spin_lock_blocking(counter_lock);
        uint32_t v = shared_counter;
        __asm volatile("nop; nop; nop; nop; nop; nop; nop; nop");  // widen the window a switch could split
        shared_counter = v + 1;
        spin_unlock(counter_lock, save);
    }
}

static volatile uint32_t lockout_counter;
static volatile bool lockout_stop;
static volatile uint32_t systicks[2];
static volatile uint32_t core1_rvr;
static unsigned launches;

static void systick_isr(void) {
    systicks[get_core_num()]++;
}

static uint32_t __attribute__((noinline)) div_work(void) {
    uint32_t s = 0;
    for (int32_t i = 1; i < 3000; i++) {
        volatile int32_t a = i * 7919, b = (i % 13) - 6;
        if (b == 0) b = 7;
        s += (uint32_t)(a / b) + (uint32_t)(a % b);
    }
    return s;
}

static uint32_t __attribute__((noinline)) work(uint32_t from, uint32_t to) {
    uint32_t h = 0;
    for (uint32_t i = from; i < to; i++) {
        uint32_t x = i * 2654435761u;
        x ^= x >> 13;
        x *= 0x5bd1e995u;
        h += x ^ (x >> 15);
    }
    return h;
}

static void core1_main(void) {
    for (;;) {
        uint32_t cmd = multicore_fifo_pop_blocking();
        uint32_t arg = multicore_fifo_pop_blocking();
        uint32_t r = 0;
        switch (cmd) {
            case CMD_SQUARES:
                for (uint32_t i = 0; i < arg; i++) r += i * i;
                break;
            case CMD_CPUID:
                r = get_core_num();
                break;
            case CMD_LOCKOUT:
                multicore_lockout_victim_init();
                multicore_fifo_push_blocking(1);  // ready
                while (!lockout_stop) lockout_counter++;
                multicore_lockout_victim_deinit();
                r = 2;
                break;
            case CMD_SYSTICK:
                systick_hw->rvr = arg;
                systick_hw->cvr = 0;
                systick_hw->csr = 0x7;
                core1_rvr = systick_hw->rvr;
                r = 3;
                break;
            case CMD_DIV:
                r = div_work();
                break;
            case CMD_ALARM: {
                int a = hardware_alarm_claim_unused(true);
                hardware_alarm_set_callback((uint)a, alarm_callback);  // enables the IRQ on this core (1)
                hardware_alarm_set_target((uint)a, make_timeout_time_us(arg));
                busy_wait_us(arg + 2000);
                hardware_alarm_set_callback((uint)a, NULL);
                hardware_alarm_unclaim((uint)a);
                r = 4;
                break;
            }
            case CMD_LOCKOUT0:
                busy_wait_us(200);
                multicore_lockout_start_blocking();  // core 0 stops in its SIO_IRQ_PROC0 handler
                victim_seen[0] = victim_counter;
                busy_wait_us(500);
                victim_seen[1] = victim_counter;
                multicore_lockout_end_blocking();
                busy_wait_us(500);
                victim_seen[2] = victim_counter;
                victim_done = true;
                while (!victim_released) tight_loop_contents();  // our reply must not reach its handler
                r = 6;
                break;
            case CMD_SPIN:
                add_locked(arg);
                r = 5;
                break;
            case CMD_WORK: {
                uint32_t n = arg;
                r = work(n / 2, n);
                break;
            }
            default:
                r = 0xbad;
        }
        multicore_fifo_push_blocking(r);
    }
}

static uint32_t ask(uint32_t cmd, uint32_t arg) {
    multicore_fifo_push_blocking(cmd);
    multicore_fifo_push_blocking(arg);
    return multicore_fifo_pop_blocking();
}

// ----------------------------------------------------------------------------------------- ROM
static uint32_t ref_popcount(uint32_t x) {
    uint32_t n = 0;
    for (int i = 0; i < 32; i++) n += (x >> i) & 1;
    return n;
}
static uint32_t ref_clz(uint32_t x) {
    uint32_t n = 0;
    for (int i = 31; i >= 0 && !((x >> i) & 1); i--) n++;
    return n;
}
static uint32_t ref_ctz(uint32_t x) {
    uint32_t n = 0;
    for (int i = 0; i < 32 && !((x >> i) & 1); i++) n++;
    return n;
}
static uint32_t ref_rev(uint32_t x) {
    uint32_t r = 0;
    for (int i = 0; i < 32; i++) r |= ((x >> i) & 1) << (31 - i);
    return r;
}

typedef uint32_t (*u32_fn)(uint32_t);
typedef uint8_t *(*memset_fn)(uint8_t *, uint8_t, uint32_t);
typedef uint32_t *(*memset4_fn)(uint32_t *, uint8_t, uint32_t);
typedef uint8_t *(*memcpy_fn)(uint8_t *, const uint8_t *, uint32_t);
typedef uint32_t *(*memcpy44_fn)(uint32_t *, const uint32_t *, uint32_t);
typedef void (*void_fn)(void);

static bool check_u32(uint32_t code, uint32_t (*ref)(uint32_t)) {
    u32_fn f = (u32_fn)rom_func_lookup(code);
    static const uint32_t vals[] = {0, 1, 0x80000000u, 0xffffffffu, 0x12345678u, 0x00f00100u, 0xdeadbeefu};
    if (!f) return false;
    for (unsigned i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        if (f(vals[i]) != ref(vals[i])) return false;
    }
    return true;
}

static uint32_t buf_a[64], buf_b[64];
#define FLASH_TEST_OFFSET (1024 * 1024)

static void __not_in_flash_func(flash_test)(bool *erase_ok, bool *program_ok) {
    static uint8_t page[FLASH_PAGE_SIZE];
    for (unsigned i = 0; i < sizeof page; i++) page[i] = (uint8_t)(i * 7 + 1);
    uint32_t irq = save_and_disable_interrupts();
    flash_range_erase(FLASH_TEST_OFFSET, FLASH_SECTOR_SIZE);  // IF, EX, RE, FC, then boot2 again
    restore_interrupts(irq);
    const uint8_t *xip = (const uint8_t *)(XIP_BASE + FLASH_TEST_OFFSET);
    *erase_ok = true;
    for (unsigned i = 0; i < FLASH_SECTOR_SIZE; i++) {
        if (xip[i] != 0xff) *erase_ok = false;
    }
    irq = save_and_disable_interrupts();
    flash_range_program(FLASH_TEST_OFFSET, page, sizeof page);  // IF, EX, RP, FC, boot2
    restore_interrupts(irq);
    *program_ok = memcmp(xip, page, sizeof page) == 0 && xip[sizeof page] == 0xff;
}

static void rom_tests(unsigned count) {
    printf("%u rom", count);
    printf(" P3=%s", check_u32(ROM_FUNC_POPCOUNT32, ref_popcount) ? "ok" : "bad");
    printf(" L3=%s", check_u32(ROM_FUNC_CLZ32, ref_clz) ? "ok" : "bad");
    printf(" T3=%s", check_u32(ROM_FUNC_CTZ32, ref_ctz) ? "ok" : "bad");
    printf(" R3=%s", check_u32(ROM_FUNC_REVERSE32, ref_rev) ? "ok" : "bad");

    uint8_t *a = (uint8_t *)buf_a, *b = (uint8_t *)buf_b;
    bool ok;
    memset_fn ms = (memset_fn)rom_func_lookup(ROM_FUNC_MEMSET);
    for (unsigned i = 0; i < sizeof buf_a; i++) a[i] = 0x11;
    ok = ms && ms(a + 3, 0xab, 50) == a + 3;
    for (unsigned i = 0; i < sizeof buf_a; i++) ok = ok && a[i] == ((i >= 3 && i < 53) ? 0xab : 0x11);
    printf(" MS=%s", ok ? "ok" : "bad");

    memset4_fn ms4 = (memset4_fn)rom_func_lookup(ROM_FUNC_MEMSET4);
    for (unsigned i = 0; i < sizeof buf_a; i++) a[i] = 0x11;
    ok = ms4 && ms4(buf_a + 1, 0x5c, 64) == buf_a + 1;
    for (unsigned i = 0; i < sizeof buf_a; i++) ok = ok && a[i] == ((i >= 4 && i < 68) ? 0x5c : 0x11);
    printf(" S4=%s", ok ? "ok" : "bad");

    memcpy_fn mc = (memcpy_fn)rom_func_lookup(ROM_FUNC_MEMCPY);
    for (unsigned i = 0; i < sizeof buf_a; i++) {
        a[i] = (uint8_t)i;
        b[i] = 0;
    }
    ok = mc && mc(b + 1, a + 5, 77) == b + 1;
    for (unsigned i = 0; i < sizeof buf_b; i++) ok = ok && b[i] == ((i >= 1 && i < 78) ? (uint8_t)(i + 4) : 0);
    printf(" MC=%s", ok ? "ok" : "bad");

    memcpy44_fn mc4 = (memcpy44_fn)rom_func_lookup(ROM_FUNC_MEMCPY44);
    for (unsigned i = 0; i < 64; i++) {
        buf_a[i] = i * 0x01010101u + 7;
        buf_b[i] = 0;
    }
    ok = mc4 && mc4(buf_b + 2, buf_a + 10, 40 * 4) == buf_b + 2;
    for (unsigned i = 0; i < 64; i++) ok = ok && buf_b[i] == ((i >= 2 && i < 42) ? buf_a[i + 8] : 0);
    printf(" C4=%s", ok ? "ok" : "bad");

    // The SDK's own wrappers go through the same ROM functions (default mem/bit ops).
    volatile uint32_t v = 0x00f0f000u;
    ok = __builtin_popcount(v) == 8 && __builtin_clz(v) == 8 && __builtin_ctz(v) == 12;
    memset(a, 0x42, 100);
    memcpy(b, a, 100);
    ok = ok && b[0] == 0x42 && b[99] == 0x42;
    printf(" sdk=%s", ok ? "ok" : "bad");

    // Flash functions: no-ops on the emulated flash, but they must be there and return.
    void_fn fif = (void_fn)rom_func_lookup(ROM_FUNC_CONNECT_INTERNAL_FLASH);
    void_fn fex = (void_fn)rom_func_lookup(ROM_FUNC_FLASH_EXIT_XIP);
    void_fn ffc = (void_fn)rom_func_lookup(ROM_FUNC_FLASH_FLUSH_CACHE);
    void_fn fcx = (void_fn)rom_func_lookup(ROM_FUNC_FLASH_ENTER_CMD_XIP);
    printf(" IF=%s EX=%s FC=%s CX=%s", fif ? "ok" : "bad", fex ? "ok" : "bad", ffc ? "ok" : "bad", fcx ? "ok" : "bad");
    uint32_t irq = save_and_disable_interrupts();
    if (fif && fex && ffc && fcx) {
        fif();
        fex();
        ffc();
        fcx();
    }
    restore_interrupts(irq);
    bool erase_ok, program_ok;
    flash_test(&erase_ok, &program_ok);
    printf(" RE=%s RP=%s", erase_ok ? "ok" : "bad", program_ok ? "ok" : "bad");
    printf(" lookupZZ=%p", rom_func_lookup(ROM_TABLE_CODE('Z', 'Z')));
    printf(" CR=%s", (const char *)rom_data_lookup(ROM_DATA_COPYRIGHT));
    printf(" version=%u\n", *(const uint8_t *)0x13);
}

// ----------------------------------------------------------------------------------------- main
static char line[LINE_MAX];

int main(void) {
    stdio_init_all();
    exception_set_exclusive_handler(SYSTICK_EXCEPTION, systick_isr);
    multicore_launch_core1(core1_main);
    launches = 1;
    unsigned count = 0;
    size_t len = 0;
    for (;;) {
        int c = getchar_timeout_us(100000);
        if (c == PICO_ERROR_TIMEOUT || c == '\r') continue;
        if (c != '\n') {
            if (len < LINE_MAX - 1) line[len++] = (char)c;
            continue;
        }
        line[len] = '\0';
        len = 0;
        count++;
        if (strncmp(line, "core1 ", 6) == 0) {
            uint32_t k = strtoul(line + 6, NULL, 10);
            uint32_t r = ask(CMD_SQUARES, k);
            uint32_t id = ask(CMD_CPUID, 0);
            printf("%u core1 %lu cpuid=%lu launches=%u\n", count, (unsigned long)r, (unsigned long)id, launches);
        } else if (strncmp(line, "reset1 ", 7) == 0) {
            uint32_t k = strtoul(line + 7, NULL, 10);
            multicore_reset_core1();  // asserts core 1 pushed 0 (checked by the pop inside)
            // Anything left in our FIFO now means core 1 pushed more than its 0.
            bool clean = !multicore_fifo_rvalid();
            multicore_launch_core1(core1_main);
            launches++;
            uint32_t r = ask(CMD_SQUARES, k);
            printf("%u reset1 clean=%d %lu launches=%u\n", count, clean, (unsigned long)r, launches);
        } else if (strcmp(line, "lockout") == 0) {
            lockout_stop = false;
            lockout_counter = 0;
            multicore_fifo_push_blocking(CMD_LOCKOUT);
            multicore_fifo_push_blocking(0);
            multicore_fifo_pop_blocking();  // core 1 is a lockout victim now
            busy_wait_us(200);
            multicore_lockout_start_blocking();
            uint32_t c1 = lockout_counter;
            busy_wait_us(500);
            uint32_t c2 = lockout_counter;
            multicore_lockout_end_blocking();
            busy_wait_us(500);
            uint32_t c3 = lockout_counter;
            lockout_stop = true;
            uint32_t done = multicore_fifo_pop_blocking();
            printf("%u lockout paused=%d resumed=%d running=%d done=%lu\n", count, c1 == c2, c3 > c2, c1 > 0,
                   (unsigned long)done);
        } else if (strcmp(line, "lockout0") == 0) {
            victim_counter = 0;
            victim_done = victim_released = false;
            multicore_lockout_victim_init();
            multicore_fifo_push_blocking(CMD_LOCKOUT0);
            multicore_fifo_push_blocking(0);
            while (!victim_done) victim_counter++;
            multicore_lockout_victim_deinit();
            victim_released = true;
            uint32_t done = multicore_fifo_pop_blocking();
            printf("%u lockout0 paused=%d resumed=%d running=%d done=%lu\n", count, victim_seen[0] == victim_seen[1],
                   victim_seen[2] > victim_seen[1], victim_seen[0] > 0, (unsigned long)done);
        } else if (strcmp(line, "systick") == 0) {
            systicks[0] = systicks[1] = 0;
            systick_hw->rvr = 12500 - 1;  // 100 us at 125 MHz
            systick_hw->cvr = 0;
            systick_hw->csr = 0x7;
            ask(CMD_SYSTICK, 125000 - 1);  // core 1: 1 ms
            uint32_t rvr0 = systick_hw->rvr;
            busy_wait_us(20000);
            systick_hw->csr = 0;
            uint32_t t0 = systicks[0], t1 = systicks[1];
            printf("%u systick c0=%lu c1=%lu rvr0=%lu rvr1=%lu\n", count, (unsigned long)t0, (unsigned long)t1,
                   (unsigned long)rvr0, (unsigned long)core1_rvr);
        } else if (strcmp(line, "div") == 0) {
            multicore_fifo_push_blocking(CMD_DIV);
            multicore_fifo_push_blocking(0);
            uint32_t mine = div_work();
            uint32_t theirs = multicore_fifo_pop_blocking();
            printf("%u div same=%d c0=%lu c1=%lu\n", count, mine == theirs, (unsigned long)mine, (unsigned long)theirs);
        } else if (strcmp(line, "rom") == 0) {
            rom_tests(count);
        } else if (strncmp(line, "speed ", 6) == 0) {
            uint32_t k = strtoul(line + 6, NULL, 10);
            uint64_t t0 = time_us_64();
            uint32_t one = work(0, k);
            uint64_t t1 = time_us_64();
            multicore_fifo_push_blocking(CMD_WORK);
            multicore_fifo_push_blocking(k);
            uint32_t two = work(0, k / 2);
            two += multicore_fifo_pop_blocking();
            uint64_t t2 = time_us_64();
            printf("%u speed %lu one=%llu two=%llu equal=%d\n", count, (unsigned long)k, (unsigned long long)(t1 - t0),
                   (unsigned long long)(t2 - t1), one == two);
        } else if (strcmp(line, "alarm1") == 0) {
            alarm_fired = 0;
            alarm_core = 0xff;
            ask(CMD_ALARM, 1000);
            printf("%u alarm1 fired=%lu core=%lu\n", count, (unsigned long)alarm_fired, (unsigned long)alarm_core);
        } else if (strncmp(line, "spin ", 5) == 0) {
            uint32_t k = strtoul(line + 5, NULL, 10);
            if (!counter_lock) counter_lock = spin_lock_init(spin_lock_claim_unused(true));
            shared_counter = 0;
            multicore_fifo_push_blocking(CMD_SPIN);
            multicore_fifo_push_blocking(k);
            add_locked(k);
            multicore_fifo_pop_blocking();
            printf("%u spin %lu total=%lu\n", count, (unsigned long)k, (unsigned long)shared_counter);
        } else if (strcmp(line, "float") == 0) {
            volatile float fa = 1.5f, fb = 2.25f;
            float prod = fa * fb;
            printf("%u float %d\n", count, (int)(prod * 1000.0f));
        } else if (strcmp(line, "time") == 0) {
            printf("%u time %llu\n", count, (unsigned long long)time_us_64());
        } else if (strcmp(line, "replug") == 0) {
            printf("%u replug\n", count);
            stdio_flush();
            sleep_ms(20);
            tud_disconnect();
            sleep_ms(100);
            tud_connect();
        } else if (strcmp(line, "reboot") == 0) {
            printf("%u reboot\n", count);
            stdio_flush();
            sleep_ms(20);
            watchdog_reboot(0, 0, 10);
            for (;;) tight_loop_contents();
        } else if (strcmp(line, "sysreset") == 0) {
            printf("%u sysreset\n", count);
            stdio_flush();
            sleep_ms(20);
            scb_hw->aircr = 0x05fa0004;
            for (;;) tight_loop_contents();
        } else if (strcmp(line, "why") == 0) {
            printf("%u why watchdog=%d enable=%d\n", count, watchdog_caused_reboot(), watchdog_enable_caused_reboot());
        } else if (strcmp(line, "unserved") == 0) {
            printf("%u calling 0x3000\n", count);
            stdio_flush();
            sleep_ms(20);
            ((void_fn)0x00003001u)();
        } else if (strcmp(line, "bootsel") == 0) {
            printf("%u bootsel\n", count);
            stdio_flush();
            sleep_ms(20);
            reset_usb_boot(0, 0);
        } else {
            printf("%u %s\n", count, line);
        }
        stdio_flush();
    }
}
