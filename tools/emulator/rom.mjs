// A stand-in for the RP2040 bootrom, written for picotflm: a 16 KiB image laid out the way the Pico SDK
// reads the real ROM (the 'Mu' magic and version byte, the 16-bit pointers at 0x14/0x16/0x18 to the
// function table, the data table and the lookup function), whose entry points are not Arm code but
// addresses the emulator serves in JavaScript (see RomServices.serve). It holds no code or data of the
// real bootrom. Every halfword that is not a table, a header field or a served entry is a BKPT #0xff,
// and board.mjs stops the run on any PC in the ROM that is not a served entry.
//
// Served (RP2040 ROM codes, documented behaviour):
//   P3 popcount32, L3 clz32, T3 ctz32, R3 reverse32,
//   MS memset, MC memcpy, S4 memset4, C4 memcpy44,
//   IF connect_internal_flash, EX flash_exit_xip, FC flash_flush_cache, CX flash_enter_cmd_xip (no-ops:
//   the emulated flash needs no set-up), RE flash_range_erase, RP flash_range_program (on the emulated
//   flash: erase sets 0xff, program ANDs like NOR flash),
//   UB reset_usb_boot (the emulator stops: the board would leave for BOOTSEL).
// Data: CR (a copyright string of this stand-in), GR (git revision word: 0), and the soft float/double
// tables SF and SD, whose 32 entries each are served entries that stop the run with a message naming
// the function: the ROM's float library is not reproduced (its transcendental functions are
// approximations no other code would match bit for bit). An image whose float/double come from the
// ROM (the SDK's default on RP2040) boots and runs until its first float/double operation; build it
// with pico_set_float_implementation(<target> compiler) and pico_set_double_implementation(<target>
// compiler) to run it here, as picotflm's board image is.
// Not served: everything else.
//
// Cycle costs charged for a served call are estimates (a call/return plus a per-byte cost for memory
// functions), not the real ROM's timings.

export const ROM_SIZE = 0x4000;
export const ROM_VERSION = 3; // RP2040-B2's bootrom version byte
export const SRAM_END = 0x20042000;

const HEADER_FUNC_TABLE = 0x14;
const HEADER_DATA_TABLE = 0x16;
const HEADER_LOOKUP = 0x18;
const COPYRIGHT_AT = 0x20;
const FUNC_TABLE_AT = 0x100;
const DATA_TABLE_AT = 0x180;
const GIT_REVISION_AT = 0x1c0;
const ENTRIES_AT = 0x200; // one served entry every 4 bytes from here
const SF_TABLE_AT = 0x600; // the byte 2 before each soft-float table holds its size in words
const SD_TABLE_AT = 0x700;
const ENTRIES_END = 0x5fc;

// The ROM soft-float table's functions by offset / 4 (pico/bootrom/sf_table.h's order).
export const SF_NAMES = ['fadd', 'fsub', 'fmul', 'fdiv', 'fcmp_fast', 'fcmp_fast_flags', 'fsqrt', 'float2int',
  'float2fix', 'float2uint', 'float2ufix', 'int2float', 'fix2float', 'uint2float', 'ufix2float', 'fcos', 'fsin',
  'ftan', 'fsincos', 'fexp', 'fln', 'fcmp_basic', 'fatan2', 'int642float', 'fix642float', 'uint642float',
  'ufix642float', 'float2int64', 'float2fix64', 'float2uint64', 'float2ufix64', 'float2double'];
export const SD_NAMES = SF_NAMES.map((n) => n.replace(/^f(?!ix|loat)/, 'd').replace('float', 'double')
  .replace('double2double', 'double2float'));
const TRAP = 0xbeff; // bkpt #0xff

export class RomError extends Error {}

export const code = (s) => s.charCodeAt(0) | (s.charCodeAt(1) << 8);

// Names of the entries that are not in the function table.
export const LOOKUP = 'rom_table_lookup';
export const CORE1_EXIT = 'core1_exit'; // core 1's LR when the ROM launches its entry
export const RESET = 'reset'; // the reset vector at 0x4

/**
 * The ROM image and the map of its served entries: { bytes, entries: Map(addr -> name), addrOf(name) }.
 * `funcs` lists the two-letter codes of the function table (in order).
 */
export function buildRom(funcs = FUNCS.map((f) => f.code)) {
  const bytes = new Uint8Array(ROM_SIZE);
  const v = new DataView(bytes.buffer);
  for (let a = 0; a < ROM_SIZE; a += 2) v.setUint16(a, TRAP, true);
  const entries = new Map();
  const addrs = new Map();
  let next = ENTRIES_AT;
  const entry = (name) => {
    const a = next;
    next += 4;
    entries.set(a, name);
    addrs.set(name, a);
    return a;
  };
  // Vector table as the chip has it: initial SP and the reset/NMI/HardFault entries.
  v.setUint32(0x0, SRAM_END, true);
  v.setUint32(0x4, entry(RESET) | 1, true);
  v.setUint32(0x8, entry('nmi') | 1, true);
  v.setUint32(0xc, entry('hardfault') | 1, true);
  bytes.set([0x4d, 0x75, 0x01, ROM_VERSION], 0x10); // 'M' 'u' 0x01 version
  const lookup = entry(LOOKUP);
  v.setUint16(HEADER_FUNC_TABLE, FUNC_TABLE_AT, true);
  v.setUint16(HEADER_DATA_TABLE, DATA_TABLE_AT, true);
  v.setUint16(HEADER_LOOKUP, lookup | 1, true);
  v.setUint16(0x1a, 0, true);
  v.setUint32(0x1c, 0, true);
  const text = new TextEncoder().encode('picotflm RP2040 ROM stand-in (emulator only; not the Raspberry Pi bootrom)\0');
  bytes.set(text, COPYRIGHT_AT);
  entry(CORE1_EXIT);
  // Function table: (code, address | 1) pairs, then a 0 code.
  let t = FUNC_TABLE_AT;
  for (const c of funcs) {
    const f = FUNCS.find((x) => x.code === c);
    if (!f) throw new RomError(`no ROM function ${c}`);
    v.setUint16(t, code(c), true);
    v.setUint16(t + 2, entry(c) | 1, true);
    t += 4;
  }
  v.setUint32(t, 0, true);
  if (t + 4 > DATA_TABLE_AT) throw new RomError('ROM function table overflows');
  // Data table: (code, address) pairs.
  v.setUint32(GIT_REVISION_AT, 0, true);
  let d = DATA_TABLE_AT;
  for (const [c, a] of [['CR', COPYRIGHT_AT], ['GR', GIT_REVISION_AT]]) {
    v.setUint16(d, code(c), true);
    v.setUint16(d + 2, a, true);
    d += 4;
  }
  for (const [c, at, names] of [['SF', SF_TABLE_AT, SF_NAMES], ['SD', SD_TABLE_AT, SD_NAMES]]) {
    v.setUint16(d, code(c), true);
    v.setUint16(d + 2, at, true);
    d += 4;
    bytes[at - 2] = names.length;
    names.forEach((n, i) => v.setUint32(at + 4 * i, entry(`${c}:${n}`) | 1, true));
  }
  v.setUint32(d, 0, true);
  if (d + 4 > GIT_REVISION_AT) throw new RomError('ROM data table overflows');
  if (next > ENTRIES_END) throw new RomError('too many ROM entries');
  // The entries themselves stay BKPT #0xff halfwords: the emulator serves them before they execute.
  return { bytes, entries, addrOf: (name) => addrs.get(name) };
}

// -------------------------------------------------------------------------------- served functions
// Each serve(ctx, r) gets the argument registers r0-r3 and returns { r0, cycles } (r0 undefined:
// unchanged). ctx = { mem: { read8, write8, read32, write32, copy, fill }, flash: Uint8Array, stop(msg, exitCode) }.

function popcount(x) {
  x >>>= 0;
  let n = 0;
  while (x) {
    x &= x - 1;
    n++;
  }
  return n;
}

function ctz(x) {
  x >>>= 0;
  if (x === 0) return 32;
  return 31 - Math.clz32(x & -x);
}

function reverse(x) {
  x >>>= 0;
  let r = 0;
  for (let i = 0; i < 32; i++) {
    r = (r << 1) | (x & 1);
    x >>>= 1;
  }
  return r >>> 0;
}

const CALL = 12; // cycles of a call and return into the ROM, roughly

export const FUNCS = [
  { code: 'P3', name: 'popcount32', serve: (c, [a]) => ({ r0: popcount(a), cycles: CALL + 10 }) },
  { code: 'L3', name: 'clz32', serve: (c, [a]) => ({ r0: Math.clz32(a), cycles: CALL + 10 }) },
  { code: 'T3', name: 'ctz32', serve: (c, [a]) => ({ r0: ctz(a), cycles: CALL + 10 }) },
  { code: 'R3', name: 'reverse32', serve: (c, [a]) => ({ r0: reverse(a), cycles: CALL + 14 }) },
  {
    code: 'MS', name: 'memset', // uint8_t *memset(uint8_t *ptr, uint8_t c, uint32_t n)
    serve: (c, [ptr, v, n]) => {
      c.mem.fill(ptr, v & 0xff, n);
      return { r0: ptr, cycles: CALL + Math.ceil(n / 2) };
    },
  },
  {
    code: 'S4', name: 'memset4', // uint32_t *memset4(uint32_t *ptr, uint8_t c, uint32_t n): word aligned
    serve: (c, [ptr, v, n]) => {
      if (ptr & 3) throw new RomError(`memset4 with an unaligned pointer 0x${hex(ptr)}`);
      c.mem.fill(ptr, v & 0xff, n);
      return { r0: ptr, cycles: CALL + Math.ceil(n / 4) };
    },
  },
  {
    code: 'MC', name: 'memcpy', // uint8_t *memcpy(uint8_t *dest, uint8_t *src, uint32_t n)
    serve: (c, [dst, src, n]) => {
      c.mem.copy(dst, src, n);
      return { r0: dst, cycles: CALL + n };
    },
  },
  {
    code: 'C4', name: 'memcpy44', // uint32_t *memcpy44(uint32_t *dest, uint32_t *src, uint32_t n): word aligned
    serve: (c, [dst, src, n]) => {
      if ((dst | src) & 3) throw new RomError(`memcpy44 with unaligned pointers 0x${hex(dst)} 0x${hex(src)}`);
      c.mem.copy(dst, src, n);
      return { r0: dst, cycles: CALL + Math.ceil(n / 2) };
    },
  },
  { code: 'IF', name: 'connect_internal_flash', serve: () => ({ cycles: CALL + 20 }) },
  { code: 'EX', name: 'flash_exit_xip', serve: () => ({ cycles: CALL + 200 }) },
  { code: 'FC', name: 'flash_flush_cache', serve: () => ({ cycles: CALL + 10 }) },
  { code: 'CX', name: 'flash_enter_cmd_xip', serve: () => ({ cycles: CALL + 200 }) },
  {
    code: 'RE', name: 'flash_range_erase', // (uint32_t addr, size_t count, uint32_t block_size, uint8_t block_cmd)
    serve: (c, [addr, count]) => {
      checkFlashRange(c, 'flash_range_erase', addr, count, 4096);
      c.flash.fill(0xff, addr, addr + count);
      return { cycles: CALL + 1000 };
    },
  },
  {
    code: 'RP', name: 'flash_range_program', // (uint32_t addr, const uint8_t *data, size_t count)
    serve: (c, [addr, data, count]) => {
      checkFlashRange(c, 'flash_range_program', addr, count, 256);
      for (let i = 0; i < count; i++) c.flash[addr + i] &= c.mem.read8(data + i);
      return { cycles: CALL + 100 + 8 * count };
    },
  },
  {
    code: 'UB', name: 'reset_usb_boot',
    serve: (c) => {
      c.stop('the firmware called reset_usb_boot: a Pico would now reboot into BOOTSEL mode', 0);
      return { cycles: CALL, noReturn: true };
    },
  },
];

function checkFlashRange(c, what, addr, count, align) {
  if (addr % align || count % align) {
    throw new RomError(`${what}(0x${hex(addr)}, ${count}): not aligned to ${align} bytes`);
  }
  if (addr + count > c.flash.length) throw new RomError(`${what}(0x${hex(addr)}, ${count}): past the end of flash`);
}

export function hex(v) {
  return (v >>> 0).toString(16).padStart(8, '0');
}

/**
 * Serves calls into the ROM stand-in. `serve(core, pc)` runs the function at `pc` with the core's
 * registers and returns the cycles it took (the core is back at its LR), or throws RomError for an
 * address the stand-in does not serve. Entries other than table functions (the lookup function,
 * core 1's exit) go to `hooks[name](core)`.
 */
export class RomServices {
  constructor(mcu, rom, ctx, hooks = {}) {
    this.mcu = mcu;
    this.rom = rom;
    this.ctx = ctx;
    this.hooks = hooks;
    this.byCode = new Map(FUNCS.map((f) => [f.code, f]));
    this.calls = new Map(); // name -> count
    this.stopped = false; // a function that does not return (reset_usb_boot) was called
  }

  serve(core, pc) {
    const name = this.rom.entries.get(pc);
    if (name === undefined) {
      throw new RomError(`call to ROM address 0x${hex(pc)}, which the ROM stand-in does not serve`);
    }
    this.calls.set(name, (this.calls.get(name) ?? 0) + 1);
    const r = core.registers;
    if (name === LOOKUP) {
      r[0] = this.lookup(r[0], r[1] & 0xffff);
      core.cycles += CALL + 20;
      core.BXWritePC(r[14]);
      return CALL + 20;
    }
    const f = this.byCode.get(name);
    if (name.startsWith('SF:') || name.startsWith('SD:')) {
      const which = name.startsWith('SF:') ? 'float' : 'double';
      throw new RomError(`the ROM's soft-${which} function ${name.slice(3)} (table ${name.slice(0, 2)}, at 0x${hex(pc)}) ` +
        `is not served by the ROM stand-in: build the image with pico_set_${which}_implementation(<target> compiler)`);
    }
    if (f === undefined) {
      const hook = this.hooks[name];
      if (!hook) throw new RomError(`the ROM's ${name} entry (0x${hex(pc)}) was reached`);
      return hook(core);
    }
    const out = f.serve(this.ctx, [r[0] >>> 0, r[1] >>> 0, r[2] >>> 0, r[3] >>> 0]);
    if (out.r0 !== undefined) r[0] = out.r0 >>> 0;
    core.cycles += out.cycles;
    if (out.noReturn) {
      this.stopped = true; // the caller stops the run: the core stays at the entry
      return out.cycles;
    }
    core.BXWritePC(r[14]);
    return out.cycles;
  }

  /** rom_table_lookup(table, code): the address stored for `code` in a (code, address) halfword table, or 0. */
  lookup(table, c) {
    for (let a = table >>> 0; a < ROM_SIZE; a += 4) {
      const k = this.mcu.readUint16(a);
      if (k === 0) return 0;
      if (k === c) return this.mcu.readUint16(a + 2);
    }
    return 0;
  }
}
