// What both runners (run.mjs: the emulator image; board.mjs: the board image) share: their command
// line, diagnostics on stderr, the capped rp2040js logger, and loading the image.
import { readFileSync } from 'node:fs';

import { loadImage, ImageError } from './image.mjs';

export function note(msg) {
  process.stderr.write(`emulator: ${msg}\n`);
}

export function fail(code, msg) {
  note(msg);
  process.exit(code);
}

// `[--cycles] [--verbose] IMAGE` -> { cycles, verbose, image }; --help prints `usage` and exits 0,
// bad arguments exit 1.
export function parseArgs(argv, usage) {
  const opts = { cycles: false, verbose: false, image: null };
  for (const a of argv) {
    if (a === '--cycles') opts.cycles = true;
    else if (a === '--verbose' || a === '-v') opts.verbose = true;
    else if (a === '--help' || a === '-h') {
      process.stdout.write(`${usage}\n`);
      process.exit(0);
    } else if (a.startsWith('-')) fail(1, `unknown option ${a}\n${usage}`);
    else if (opts.image === null) opts.image = a;
    else fail(1, `one image only\n${usage}`);
  }
  if (opts.image === null) fail(1, usage);
  return opts;
}

export class EmulatorError extends Error {}

// rp2040js logs every unimplemented instruction, invalid access and SIO read as a warning: at full
// speed that is millions of lines. Unimplemented instructions mean wrong results, so the first few are
// always shown; other warnings only with `verbose`, capped. Errors stop the run (EmulatorError).
// `onInfo(component, message)` sees rp2040js's info messages. `warnings` counts them by kind.
const WARN_CAP = 20;

export function makeLogger(verbose, onInfo = () => {}) {
  const warnings = new Map();
  let shown = 0;
  const logger = {
    debug() {},
    info: onInfo,
    warn(component, message) {
      const key = message.includes('not implemented') ? 'unimplemented instruction' : component;
      warnings.set(key, (warnings.get(key) ?? 0) + 1);
      const important = key === 'unimplemented instruction' || message.startsWith('Opcode');
      if ((important || verbose) && shown < WARN_CAP) {
        shown++;
        note(`warning [${component}] ${message}`);
      }
    },
    error(component, message) {
      throw new EmulatorError(`[${component}] ${message}`);
    },
  };
  return { logger, warnings };
}

// The warning counts, said once at exit: unimplemented instructions always, the rest with `verbose`.
export function reportWarnings(warnings, verbose) {
  for (const [key, n] of warnings) {
    if (key === 'unimplemented instruction' || verbose) note(`${n} warning(s): ${key}`);
  }
}

// How both runners end: the warning counts said, stdin let go, and out through the event loop so that
// stderr is flushed, without waiting for anything else.
export function exitRun(code, warnings, verbose) {
  reportWarnings(warnings, verbose);
  process.exitCode = code;
  process.stdin.destroy();
  setImmediate(() => process.exit(code));
}

// The runners' stdio. A signal, or a reader gone (EPIPE on stdout), stops the run; stdin's bytes go to
// `deliver`, then `wake` resumes the device. On EOF what is still queued is delivered first: the runner
// stops once the device has taken it all and idles (it reads `stdio.eof`), or after EOF_GRACE_MS (a
// busy firmware), so `echo info | node run.mjs fw.elf` gets its answer.
const EOF_GRACE_MS = 10000;

export function wireStdio(shutdown, deliver, wake) {
  const stdio = { eof: false };
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(signal, () => shutdown(0));
  process.stdout.on('error', () => shutdown(0));
  process.stdin.on('data', (chunk) => {
    deliver(chunk);
    wake();
  });
  process.stdin.on('end', () => {
    stdio.eof = true;
    setTimeout(() => shutdown(0), EOF_GRACE_MS).unref();
    wake();
  });
  process.stdin.on('error', () => shutdown(0));
  return stdio;
}

// The image at `path` (ELF, UF2 or .bin), or exit 1 with one line saying why not.
export function loadImageOrExit(path) {
  try {
    return loadImage(path, readFileSync(path));
  } catch (e) {
    if (e instanceof ImageError || e.code === 'ENOENT' || e.code === 'EISDIR' || e.code === 'EACCES') {
      fail(1, `cannot load ${path}: ${e.message}`);
    }
    throw e;
  }
}
