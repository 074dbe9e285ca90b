#!/usr/bin/env node
// Runs a Raspberry Pi Pico firmware image in the rp2040js emulator (core 0 only, no bootrom)
// with UART0 on this process's stdin/stdout:
//   UART0 TX bytes  -> stdout (binary, written as soon as a batch of instructions ends)
//   stdin bytes     -> UART0 RX (queued, fed as the 32-entry RX FIFO has room)
// Diagnostics go to stderr. Exits on stdin EOF (the parent went away), SIGTERM and SIGINT.
//
//   node run.mjs [--cycles] [--verbose] IMAGE.{elf,bin,uf2}
//
// Exit codes: 0 stopped (stdin closed or signal), 1 bad image or arguments, 3 the firmware crashed
// (breakpoint/hard fault, PC left flash and SRAM, emulator error).
import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { format } from 'node:util';
import { RP2040 } from 'rp2040js';

import { EmulatorError, exitRun, fail, loadImageOrExit, makeLogger, note, parseArgs, wireStdio } from './cli.mjs';
import { ImageError, bootImage } from './image.mjs';

const USAGE = 'usage: node run.mjs [--cycles] [--verbose] IMAGE.{elf,bin,uf2}';

const opts = parseArgs(process.argv.slice(2), USAGE);
const { logger, warnings } = makeLogger(opts.verbose);

// A few rp2040js modules write to the console directly (SIO: "Read from invalid SIO address" for
// every access to the inter-core FIFO, since only core 0 is emulated): route them through the
// capped logger, and say once what a multicore firmware should do.
let multicoreHinted = false;
const SIO_FIFO = /invalid SIO address: (50|54|58)\b/; // FIFO_ST, FIFO_WR, FIFO_RD
for (const level of ['log', 'info', 'debug', 'warn', 'error']) {
  console[level] = (...parts) => {
    const message = format(...parts);
    if (!multicoreHinted && SIO_FIFO.test(message)) {
      multicoreHinted = true;
      note('the firmware uses the inter-core FIFO (multicore), but the emulator runs core 0 only: ' +
        'build a single-core image (it will likely hang here)');
    }
    logger.warn('console', message);
  };
}

// ------------------------------------------------------------------------------------- load and boot
const image = loadImageOrExit(opts.image);

const mcu = new RP2040();
mcu.logger = logger;
let vectors;
try {
  vectors = bootImage(mcu, image); // loads flash (and any RAM segments), sets VTOR, SP, PC
} catch (e) {
  if (e instanceof ImageError) fail(1, `cannot boot ${opts.image}: ${e.message}`);
  throw e;
}
note(
  `${image.format.toUpperCase()} ${opts.image}: ${image.summary}; ` +
    `boot from vector table 0x10000100 (SP 0x${hex(vectors.sp)}, PC 0x${hex(vectors.pc)}), boot2 skipped`,
);

function hex(v) {
  return (v >>> 0).toString(16).padStart(8, '0');
}

// --------------------------------------------------------------------------------------------- UART0
const uart = mcu.uart[0];
const core = mcu.core;
// PICOTFLM_EMU_PROFILE=FILE: cycles spent at each instruction address, written at exit (a developer
// aid to find where a kernel's cycles go; slows the emulator down).
const pcCycles = process.env.PICOTFLM_EMU_PROFILE ? new Map() : null;
const clock = mcu.clock;

let txChunks = [];
let txCount = 0;
uart.onByte = (b) => {
  txChunks.push(b);
  txCount++;
};

function flushTx() {
  if (txChunks.length === 0) return;
  const buf = Buffer.from(txChunks);
  txChunks = [];
  try {
    process.stdout.write(buf); // a pipe on Linux: synchronous, so bytes leave in order and at once
  } catch {
    shutdown(0); // the reader went away
  }
}

// Bytes from stdin wait here until the RX FIFO has room. rp2040js's FIFO (32 entries, like the
// PL011's) silently drops a byte pushed when full, so never push more than the free space.
// Nothing is fed before the firmware enables the UART (a real PL011 receives nothing while disabled;
// a USB CDC host buffers it instead, which is what queueing here amounts to).
const rxQueue = [];
let rxHead = 0;
let rxFed = 0;
let rxPolledEmpty = 0;

function rxPending() {
  return rxHead < rxQueue.length;
}

function feedRx() {
  if (!(uart.enabled && uart.rxEnabled)) return;
  const fifo = uart.rxFIFO;
  let room = fifo.size - fifo.itemCount;
  while (room > 0 && rxHead < rxQueue.length) {
    uart.feedByte(rxQueue[rxHead++]);
    room--;
    rxFed++;
  }
  if (rxHead === rxQueue.length) {
    rxQueue.length = 0;
    rxHead = 0;
  } else if (rxHead > 65536) {
    rxQueue.splice(0, rxHead);
    rxHead = 0;
  }
}

// Count the firmware's polls of an empty RX FIFO (UARTFR with RXFE): a firmware waiting for a request
// polls in a tight loop, and the emulator then slows down instead of burning a host core.
const UARTFR = 0x18;
const uartRead = uart.readUint32.bind(uart);
uart.readUint32 = (offset) => {
  if (offset === UARTFR && uart.rxFIFO.empty) rxPolledEmpty++;
  return uartRead(offset);
};

// ------------------------------------------------------------------------------------- the run loop
// The CPU runs in slices of at most SLICE_MS wall time, each made of batches of BATCH instructions;
// between batches TX is flushed and RX fed; between slices the event loop reads stdin and signals.
const BATCH = 2048;
const SLICE_MS = 25;
// Idle: a slice in which the firmware only polled an empty RX FIFO (no byte in or out). Then the
// next slices run IDLE_RUN_MS every IDLE_PERIOD_MS (emulated time still passes, a little slower),
// until a byte arrives on stdin or the firmware prints.
const IDLE_POLLS = 64; // polls of an empty RX FIFO in one slice (a 2 ms idle slice has a few hundred)
const IDLE_RUN_MS = 2;
const IDLE_PERIOD_MS = 20;

let cycleNanos = 1e9 / mcu.clkSys;
mcu.addClockListener((clkSys) => {
  cycleNanos = 1e9 / clkSys;
});

const FLASH_LO = 0x10000000;
const FLASH_HI = 0x14000000; // 16 MB flash and its XIP mirrors
const SRAM_LO = 0x20000000;
const SRAM_HI = 0x20042000;
const XIP_SRAM_LO = 0x15000000;
const XIP_SRAM_HI = 0x15004000;

let stopped = false;
let idle = false;
let sleeping = false; // waiting for an interrupt with no timer alarm pending: resumes on stdin data
let timer = null; // { kind: 'immediate' | 'timeout', handle }
const t0 = performance.now();

function pcValid(pc) {
  return (
    (pc >= FLASH_LO && pc < FLASH_HI) ||
    (pc >= SRAM_LO && pc < SRAM_HI) ||
    (pc >= XIP_SRAM_LO && pc < XIP_SRAM_HI)
  );
}

function crash(msg, pc = core.PC) {
  flushTx();
  note(`firmware stopped: ${msg}`);
  note(`  PC 0x${hex(pc)} SP 0x${hex(core.SP)} LR 0x${hex(core.registers[14])} ` +
    `IPSR ${core.IPSR} after ${core.cycles} cycles`);
  shutdown(3);
}

const EXCEPTIONS = { 2: 'NMI', 3: 'HardFault', 11: 'SVCall', 14: 'PendSV', 15: 'SysTick' };
let breakHit = null;
mcu.onBreak = (code) => {
  breakHit = code;
};

function schedule(kind, ms) {
  timer = kind === 'timeout'
    ? { kind, handle: setTimeout(runSlice, ms) }
    : { kind, handle: setImmediate(runSlice) };
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
  const budget = idle ? IDLE_RUN_MS : SLICE_MS;
  const deadline = performance.now() + budget;
  const polls0 = rxPolledEmpty;
  const tx0 = txCount;
  const fed0 = rxFed;
  try {
    for (;;) {
      if (rxPending()) feedRx();
      for (let i = 0; i < BATCH; i++) {
        if (core.waiting) {
          const dt = clock.nanosToNextAlarm;
          if (dt <= 0 && clock.nextAlarm === null) {
            sleeping = true; // WFI/WFE and nothing scheduled: only an interrupt wakes the core
            break;
          }
          clock.tick(dt);
        } else {
          if (pcCycles !== null) {
            const pc = core.PC >>> 0;
            const d = core.executeInstruction();
            pcCycles.set(pc, (pcCycles.get(pc) ?? 0) + d);
            clock.tick(d * cycleNanos);
          } else {
            clock.tick(core.executeInstruction() * cycleNanos);
          }
        }
        if (breakHit !== null) break;
      }
      if (breakHit !== null) {
        const exc = core.IPSR;
        const where = exc === 0 ? 'thread mode' : (EXCEPTIONS[exc] ?? `IRQ ${exc - 16}`);
        crash(`breakpoint (BKPT/UDF 0x${breakHit.toString(16)}) in ${where}` +
          (exc === 3 ? ': hard fault' : exc >= 16 ? ': unhandled interrupt' : ' (panic, exit or assert)'),
          core.PC - core.breakRewind);
        return;
      }
      const pc = core.PC >>> 0;
      if (!pcValid(pc)) {
        if (pc < 0x4000) {
          crash('PC in the bootrom region, and the emulator has no bootrom: build the image with the ' +
            'no-ROM settings (pico_set_{float,double,mem_ops,bit_ops}_implementation(<target> compiler))');
        } else crash('PC left flash and SRAM');
        return;
      }
      flushTx();
      if (sleeping) {
        if (core.waiting) break;
        sleeping = false;
      }
      // The firmware is waiting for a request (it keeps polling an empty RX FIFO): end the slice now,
      // so the event loop can hand over stdin data at once instead of after the rest of the slice.
      if (!rxPending() && rxPolledEmpty - polls0 >= IDLE_POLLS) break;
      if (performance.now() >= deadline) break;
    }
  } catch (e) {
    if (e instanceof EmulatorError) {
      crash(`emulator error ${e.message}`);
      return;
    }
    throw e;
  }
  flushTx();
  if (stopped) return;
  const busy = txCount !== tx0 || rxFed !== fed0 || rxPending();
  idle = !busy && rxPolledEmpty - polls0 >= IDLE_POLLS;
  if (stdio.eof && !rxPending() && uart.rxFIFO.empty && (idle || (sleeping && core.waiting))) {
    shutdown(0);
    return;
  }
  if (sleeping && core.waiting) return; // resumed by wake()
  sleeping = false;
  if (idle) schedule('timeout', IDLE_PERIOD_MS - IDLE_RUN_MS);
  else schedule('immediate');
}

function wake() {
  idle = false;
  if (sleeping) {
    sleeping = false;
    feedRx(); // the RX interrupt (if enabled) is what wakes a sleeping core
  }
  if (stopped) return;
  if (timer === null || timer.kind === 'timeout') {
    unschedule(); // an idle pause is cut short
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
    const cyc = core.cycles;
    note(`${cyc} cycles (${(clock.nanos / 1e6).toFixed(3)} ms emulated) in ${wall.toFixed(3)} s wall, ` +
      `${(cyc / wall / 1e6).toFixed(1)} M cycles/s`);
  }
  if (pcCycles !== null) {
    const rows = [...pcCycles].map(([pc, c]) => `${pc.toString(16)} ${c}`).join('\n');
    writeFileSync(process.env.PICOTFLM_EMU_PROFILE, rows + '\n');
  }
  exitRun(code, warnings, opts.verbose);
}

const stdio = wireStdio(shutdown, (chunk) => {
  for (const b of chunk) rxQueue.push(b);
}, wake);

schedule('immediate');
