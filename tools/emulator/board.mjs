#!/usr/bin/env node
// Board mode: runs the image a user flashes onto a Raspberry Pi Pico (boot2 at 0x10000000, stdio over
// USB CDC, both cores, the SDK's ROM mem/bit ops) in rp2040js, with the USB CDC serial on this
// process's stdin/stdout:
//   bytes the device sends on its CDC bulk IN endpoint -> stdout (binary)
//   stdin bytes -> the device's CDC bulk OUT endpoint (held until the port is open, as a host would)
// Diagnostics go to stderr; once the image is in flash the line holding "boot from vector table" is
// printed there (the same ready mark as run.mjs), though the run starts at boot2 as on a Pico.
// Exits on stdin EOF (the parent went away), SIGTERM and SIGINT. With PICOTFLM_EMU_PROFILE=FILE, each
// SIGUSR2 writes the cycles spent at every instruction address so far to FILE (profile.mjs).
//
//   node board.mjs [--cycles] [--verbose] IMAGE.{uf2,elf,bin}
//
// What it adds to rp2040js: a ROM stand-in (rom.mjs, never the real bootrom), core 1 and lockstep
// scheduling (cores.mjs), the USB host side of a CDC serial port (usb.mjs), and the ROM's flash boot
// (boot2 copied to the top of SRAM and run with LR = 0, as the ROM does; the ROM's own flash checks and
// SSI set-up are skipped).
//
// Exit codes: 0 stopped (stdin closed, signal, the firmware left for BOOTSEL), 1 bad image or arguments,
// 3 the firmware crashed (breakpoint/hard fault, PC left flash/SRAM, a call to a ROM address the
// stand-in does not serve, emulator error).
import { performance } from 'node:perf_hooks';
import { format } from 'node:util';
import { RP2040 } from 'rp2040js';

import { DualCore } from './cores.mjs';
import { EmulatorError, exitRun, fail, loadImageOrExit, makeLogger, note, parseArgs, wireStdio } from './cli.mjs';
import { BOOT2_RAM, BOOT2_SIZE, SRAM_BASE, layFlash } from './image.mjs';
import { CORE1_EXIT, RESET, RomError, RomServices, buildRom, hex } from './rom.mjs';
import { PcProfile } from './profile.mjs';
import { CdcHost } from './usb.mjs';

const USAGE = 'usage: node board.mjs [--cycles] [--verbose] IMAGE.{uf2,elf,bin}';

const opts = parseArgs(process.argv.slice(2), USAGE);
// SEV is reported by rp2040js through logger.info: that is where the other core is woken.
let dual = null;
const { logger, warnings } = makeLogger(opts.verbose, (component, message) => {
  if (message === 'SEV' && dual !== null) dual.sev();
});

for (const level of ['log', 'info', 'debug', 'warn', 'error']) {
  console[level] = (...parts) => logger.warn('console', format(...parts));
}

// ------------------------------------------------------------------------------------- load and boot
const image = loadImageOrExit(opts.image);

const rom = buildRom();
const flashImage = new Uint8Array(16 * 1024 * 1024).fill(0xff);
let boot2;
{
  // Lay the image out once, on a scratch chip: the flash contents carry over chip resets.
  const scratch = new RP2040();
  scratch.logger = logger;
  try {
    boot2 = layFlash(scratch, image);
  } catch (e) {
    if (e instanceof ImageError) fail(1, `cannot boot ${opts.image}: ${e.message}`);
    throw e;
  }
  flashImage.set(scratch.flash);
}
if (!boot2.crcOk) {
  fail(1, `cannot boot ${opts.image}: no valid boot2 in the first 256 bytes of flash (CRC 0x${hex(boot2.crc)}, ` +
    `stored 0x${hex(boot2.stored)}): a Pico's ROM would not boot it. An image built for the emulator ` +
    '(no boot2 needed) runs under run.mjs');
}
const vtView = new DataView(flashImage.buffer);
const vtSp = vtView.getUint32(0x100, true);
const vtPc = vtView.getUint32(0x104, true);

let stopped = false;
let stopRequest = null; // { msg, code } from a served ROM function
let resetRequest = null; // why the chip resets (watchdog, SYSRESETREQ), acted on between quanta

// Totals over chip resets (each reset builds a new chip: counters restart there).
const totals = { cycles: 0, nanos: 0, busy: [0, 0], launches: 0, core1Resets: 0, enumerations: 0, chipResets: 0 };
let mcu = null;
let romServices = null;
let cdc = null;
let txChunks = [];
let txCount = 0;
let timerReads = 0;

// PICOTFLM_EMU_PROFILE=FILE: every executed instruction's cycles summed by its address (profile.mjs);
// each SIGUSR2 writes the sums so far to FILE (the host takes the difference of two).
const PROFILE_PATH = process.env.PICOTFLM_EMU_PROFILE || null;
const profile = PROFILE_PATH ? new PcProfile() : null;
if (profile !== null) process.on('SIGUSR2', () => profile.write(PROFILE_PATH));

const WATCHDOG_BOOT_MAGIC = 0xb007c0d3;
const PPB_AIRCR = 0xd0c;

/**
 * Builds the chip: the ROM stand-in, flash (and SRAM, kept over a reset as on the chip), both cores, the
 * USB host, and starts core 0 as the ROM would: at a watchdog_reboot() target if the watchdog scratch
 * registers hold one, else the flash boot (boot2 copied to the top of SRAM and called with LR = 0, so it
 * goes on into the vector table at 0x10000100, its stack just below its copy; the ROM's own flash checks
 * and SSI set-up are skipped).
 */
function buildChip(previous = null, why = null) {
  const m = new RP2040();
  m.logger = logger;
  // The ROM goes in before anything else (loadBootrom would reset the chip and erase flash).
  m.bootrom.set(new Uint32Array(rom.bytes.buffer));
  // The ROM is read-only on the chip; rp2040js would let a stray store change it.
  const writeUint32 = m.writeUint32.bind(m);
  m.writeUint32 = (address, value) => {
    if (address >>> 0 < rom.bytes.length) return;
    writeUint32(address, value);
  };
  m.flash.set(previous ? previous.flash : flashImage);
  let scratchRegs = null;
  if (previous) {
    m.sram.set(previous.sram);
    const wd = m.peripherals[0x40058];
    const old = previous.peripherals[0x40058];
    wd.scratchData.set(old.scratchData);
    wd.reason = why === 'watchdog' ? old.reason : 0; // REASON is 0 after a reset that is not the watchdog's
    scratchRegs = wd.scratchData;
  }
  const ctx = {
    flash: m.flash,
    stop(msg, code) {
      stopRequest = { msg, code };
    },
    mem: {
      read8: (a) => m.readUint8(a >>> 0),
      fill(ptr, v, n) {
        const off = ptr - SRAM_BASE;
        if (off >= 0 && off + n <= m.sram.length) m.sram.fill(v, off, off + n);
        else for (let i = 0; i < n; i++) m.writeUint8(ptr + i, v);
      },
      copy(dst, src, n) {
        const d = dst - SRAM_BASE;
        if (d >= 0 && d + n <= m.sram.length) {
          const s = src - SRAM_BASE;
          if (s >= 0 && s + n <= m.sram.length) return void m.sram.copyWithin(d, s, s + n);
          const f = (src & 0x00ffffff) >>> 0;
          if (src >>> 28 === 1 && src < 0x14000000 && f + n <= m.flash.length) {
            return void m.sram.set(m.flash.subarray(f, f + n), d);
          }
        }
        for (let i = 0; i < n; i++) m.writeUint8(dst + i, m.readUint8(src + i));
      },
    },
  };
  romServices = new RomServices(m, rom, ctx, {
    [CORE1_EXIT]: (core) => dual.core1Exit(core),
    [RESET]: (core) => dual.romReset(core),
  });
  dual = new DualCore(m, rom, romServices, note);
  dual.profile = profile;

  // Chip resets the firmware can ask for: the watchdog (watchdog_reboot, watchdog timeout) and
  // AIRCR.SYSRESETREQ from either core.
  const watchdog = m.peripherals[0x40058];
  watchdog.onWatchdogTrigger = () => {
    resetRequest ??= 'watchdog';
    // The chip resets here; rp2040js's watchdog would otherwise fire again at once, forever.
    watchdog.enable = false;
    watchdog.alarm.enable = false;
    watchdog.timer.enable = false;
  };
  const ppbWrite = m.ppb.writeUint32.bind(m.ppb);
  m.ppb.writeUint32 = (offset, value) => {
    if (offset === PPB_AIRCR && value >>> 16 === 0x05fa && value & 4) {
      resetRequest ??= 'AIRCR.SYSRESETREQ';
      return;
    }
    ppbWrite(offset, value);
  };

  const core0 = m.core;
  if (scratchRegs && scratchRegs[4] === WATCHDOG_BOOT_MAGIC && scratchRegs[5] === ((scratchRegs[7] ^ -WATCHDOG_BOOT_MAGIC) >>> 0)) {
    // watchdog_reboot(pc, sp, ...): the ROM starts that PC with that SP instead of booting flash.
    scratchRegs[4] = 0;
    core0.SP = scratchRegs[6];
    core0.PC = scratchRegs[7] & ~1;
    core0.registers[14] = 0;
  } else {
    m.sram.set(m.flash.subarray(0, BOOT2_SIZE), BOOT2_RAM - SRAM_BASE);
    core0.VTOR = 0;
    core0.SP = BOOT2_RAM;
    core0.registers[14] = 0;
    core0.PC = BOOT2_RAM;
  }

  const queued = cdc ? cdc.txQueue : [];
  cdc = new CdcHost(m.usbCtrl, {
    note,
    verbose: opts.verbose,
    onData(buf) {
      txChunks.push(Buffer.from(buf));
      txCount += buf.length;
    },
  });
  cdc.txQueue.push(...queued); // bytes the host had not delivered yet wait for the new connection

  // A firmware waiting for a request over USB polls: stdio_usb's getchar spins on busy_wait_us(1), which
  // reads the TIMER. Count TIMER reads to tell that from computing (which reads the clock rarely).
  const timerPeripheral = m.peripherals[0x40054];
  const timerRead = timerPeripheral.readUint32.bind(timerPeripheral);
  timerPeripheral.readUint32 = (offset) => {
    timerReads++;
    return timerRead(offset);
  };
  mcu = m;
}

/** A chip reset: the counters of the old chip go into the totals, and a new chip boots from the ROM. */
function resetChip(why) {
  const old = mcu;
  totals.cycles += dual.now;
  totals.nanos += old.clock.nanos;
  totals.busy[0] += dual.st[0].busy;
  totals.busy[1] += dual.st[1].busy;
  totals.launches += dual.st[1].launches;
  totals.core1Resets += dual.core1Resets - 1;
  totals.enumerations += cdc.enumerations;
  totals.chipResets++;
  note(`chip reset (${why}) after ${dual.now} cycles: booting again, the USB device will enumerate anew`);
  buildChip(old, why);
}

buildChip();
note(
  `${image.format.toUpperCase()} ${opts.image}: ${image.summary}; board mode (boot2 CRC ok, ROM stand-in, ` +
    `2 cores, USB CDC on stdin/stdout); boot from vector table 0x10000100 (SP 0x${hex(vtSp)}, ` +
    `PC 0x${hex(vtPc)}) via boot2 at 0x${hex(BOOT2_RAM)}`,
);

// ----------------------------------------------------------------------------------------- USB CDC
function flushTx() {
  if (txChunks.length === 0) return;
  const buf = Buffer.concat(txChunks);
  txChunks = [];
  try {
    process.stdout.write(buf);
  } catch {
    shutdown(0);
  }
}

// ------------------------------------------------------------------------------------- the run loop
// Slices of at most SLICE_MS wall time, each made of lockstep quanta (cores.mjs); between slices the
// event loop reads stdin and signals. A slice with nothing sent or received in which the cores mostly
// slept or polled the timer (more than one TIMER read per IDLE_READ_CYCLES cycles) makes the next
// slices short and spaced out (IDLE_RUN_MS every IDLE_PERIOD_MS) until a byte moves again, so a
// firmware waiting for a request does not burn a host core.
const SLICE_MS = 25;
const IDLE_RUN_MS = 2;
const IDLE_PERIOD_MS = 20;
const QUANTA_PER_CHECK = 128;
const IDLE_READ_CYCLES = 2000;

let idle = false;
let sleeping = false;
let timer = null;
const t0 = performance.now();

const FLASH_LO = 0x10000000;
const FLASH_HI = 0x14000000;
const SRAM_LO = 0x20000000;
const SRAM_HI = 0x20042000;
const XIP_SRAM_LO = 0x15000000;
const XIP_SRAM_HI = 0x15004000;
const ROM_HI = 0x4000;

function pcValid(pc) {
  return (pc >= FLASH_LO && pc < FLASH_HI) || (pc >= SRAM_LO && pc < SRAM_HI) ||
    (pc >= XIP_SRAM_LO && pc < XIP_SRAM_HI) || pc < ROM_HI;
}

const EXCEPTIONS = { 2: 'NMI', 3: 'HardFault', 11: 'SVCall', 14: 'PendSV', 15: 'SysTick' };

function crash(msg, coreIndex = dual.cur, pc = null) {
  flushTx();
  const c = dual.cores[coreIndex];
  note(`firmware stopped: ${msg}`);
  note(`  core ${coreIndex}: PC 0x${hex(pc ?? c.PC)} SP 0x${hex(c.SP)} LR 0x${hex(c.registers[14])} ` +
    `IPSR ${c.IPSR} at cycle ${dual.now}`);
  shutdown(3);
}

function schedule(kind, ms) {
  timer = kind === 'timeout' ? { kind, handle: setTimeout(runSlice, ms) } : { kind, handle: setImmediate(runSlice) };
}

function unschedule() {
  if (timer === null) return;
  if (timer.kind === 'timeout') clearTimeout(timer.handle);
  else clearImmediate(timer.handle);
  timer = null;
}

function runSlice() {
  timer = null;
  if (stopped) return;
  const deadline = performance.now() + (idle ? IDLE_RUN_MS : SLICE_MS);
  const tx0 = txCount;
  const sent0 = cdc.txBytes;
  const busy0 = dual.st[0].busy + dual.st[1].busy;
  const now0 = dual.now;
  const reads0 = timerReads;
  try {
    for (;;) {
      let r = 'ok';
      for (let q = 0; q < QUANTA_PER_CHECK && r === 'ok'; q++) r = dual.step();
      if (r === 'break') {
        const { code, core } = dual.breakHit;
        const c = dual.cores[core];
        const exc = c.IPSR;
        const where = exc === 0 ? 'thread mode' : (EXCEPTIONS[exc] ?? `IRQ ${exc - 16}`);
        crash(`breakpoint (BKPT/UDF 0x${code.toString(16)}) on core ${core} in ${where}` +
          (exc === 3 ? ': hard fault' : exc >= 16 ? ': unhandled interrupt' : ' (panic, exit or assert)'),
        core, c.PC - c.breakRewind);
        return;
      }
      if (resetRequest !== null) {
        const why = resetRequest;
        resetRequest = null;
        flushTx();
        resetChip(why);
        break;
      }
      if (r === 'stop' || stopRequest !== null) {
        flushTx();
        note(stopRequest.msg);
        shutdown(stopRequest.code);
        return;
      }
      for (let i = 0; i < 2; i++) {
        if (dual.st[i].state !== 'run') continue;
        const pc = dual.cores[i].PC >>> 0;
        if (!pcValid(pc)) {
          crash('PC left flash and SRAM', i);
          return;
        }
      }
      flushTx();
      if (r === 'sleep') {
        sleeping = true;
        break;
      }
      if (performance.now() >= deadline) break;
    }
  } catch (e) {
    if (e instanceof RomError) {
      crash(e.message);
      return;
    }
    if (e instanceof EmulatorError) {
      crash(`emulator error ${e.message}`);
      return;
    }
    throw e;
  }
  flushTx();
  if (stopped) return;
  const moved = txCount !== tx0 || cdc.txBytes !== sent0 || (cdc.pending && cdc.ready);
  const ran = dual.now - now0;
  const busy = dual.st[0].busy + dual.st[1].busy - busy0;
  const polling = (timerReads - reads0) * IDLE_READ_CYCLES > ran;
  idle = !moved && ran > 0 && (busy < ran / 4 || polling);
  if (stdio.eof && !cdc.pending && (idle || sleeping)) {
    shutdown(0);
    return;
  }
  if (sleeping) return; // resumed by wake()
  if (idle) schedule('timeout', IDLE_PERIOD_MS - IDLE_RUN_MS);
  else schedule('immediate');
}

function wake() {
  idle = false;
  sleeping = false;
  if (stopped) return;
  if (timer === null || timer.kind === 'timeout') {
    unschedule();
    schedule('immediate');
  }
}

// ---------------------------------------------------------------------------------------- stop
function shutdown(code) {
  if (stopped) return;
  stopped = true;
  unschedule();
  try {
    flushTx();
  } catch {
    /* the reader is gone */
  }
  if (opts.cycles) {
    const wall = (performance.now() - t0) / 1000;
    const cyc = totals.cycles + dual.now;
    const b0 = totals.busy[0] + dual.st[0].busy;
    const b1 = totals.busy[1] + dual.st[1].busy;
    note(`${cyc} cycles (${((totals.nanos + mcu.clock.nanos) / 1e6).toFixed(3)} ms emulated) in ${wall.toFixed(3)} s wall, ` +
      `${(cyc / wall / 1e6).toFixed(1)} M cycles/s; busy cycles core 0 ${b0}, core 1 ${b1} ` +
      `(${((b0 + b1) / wall / 1e6).toFixed(1)} M executed cycles/s); core 1 launches ` +
      `${totals.launches + dual.st[1].launches}, resets ${totals.core1Resets + dual.core1Resets - 1}; ` +
      `USB enumerations ${totals.enumerations + cdc.enumerations}; chip resets ${totals.chipResets}`);
  }
  if (opts.verbose) {
    note(`ROM calls: ${[...romServices.calls].map(([k, n]) => `${k} ${n}`).join(', ') || 'none'}`);
  }
  exitRun(code, warnings, opts.verbose);
}

const stdio = wireStdio(shutdown, (chunk) => cdc.send(chunk), wake);

schedule('immediate');
