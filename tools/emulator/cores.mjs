// The RP2040's second core on top of rp2040js (which models core 0 only), and a lockstep scheduler for
// both. What is per core here, as on the chip:
//   - the Cortex-M0+ itself (registers, NVIC, VTOR, SHPR, PRIMASK): a second CortexM0Core, with
//     `mcu.core` switched to whichever core executes, so rp2040js's PPB (NVIC, VTOR, ICSR) reaches the
//     executing core's state;
//   - SysTick (one per core: rp2040js has a single one, replaced here for both);
//   - in the SIO: CPUID, the inter-core FIFOs (FIFO_ST/WR/RD, 8 words each way, WOF/ROE sticky
//     flags), the hardware divider, the interpolators; SIO_IRQ_PROC0 (IRQ 15) goes to core 0 only and
//     SIO_IRQ_PROC1 (IRQ 16) to core 1 only, raised while the core's RX FIFO holds data or a sticky
//     flag is set.
// Shared: memory, peripherals (their IRQs reach both NVICs; each core takes those it enables),
// spinlocks, GPIO.
// SEV on one core wakes the other from WFE (or sets its event flag). PSM FRCE_OFF.PROC1 holds core 1 in
// reset; releasing it restarts core 1 in the ROM, which (served here in JavaScript) drains core 1's RX
// FIFO, pushes 0 to core 0 and then waits for the launch handshake 0, 0, 1, vtor, sp, entry, echoing
// every word; on the last it starts `entry` with that VTOR and SP, its LR pointing at a ROM entry that
// brings it back to the wait loop.
//
// Scheduling: the cores run in lockstep quanta of QUANTUM cycles (core 0 then core 1, each until its
// cycle count reaches the end of the quantum), then the shared clock advances by the quantum (timers,
// alarms, USB). A core in WFI/WFE skips to the end of the quantum; when both wait, the clock jumps to
// the next alarm. There is no bus contention and no XIP cache model: a two-core speed-up measured here is
// an upper bound.
import { CORE1_EXIT, RESET, RomError } from './rom.mjs';

export const QUANTUM = 64; // cycles per core per lockstep step
const SIO_CPUID = 0x000;
const SIO_FIFO_ST = 0x050;
const SIO_FIFO_WR = 0x054;
const SIO_FIFO_RD = 0x058;
const FIFO_DEPTH = 8;
const ST_VLD = 1;
const ST_RDY = 2;
const ST_WOF = 4;
const ST_ROE = 8;
const SIO_IRQ = [15, 16]; // SIO_IRQ_PROC0, SIO_IRQ_PROC1
const PSM_FRCE_OFF = 0x04;
const PSM_PROC1 = 1 << 16;
const SYST_CSR = 0x10;
const SYST_RVR = 0x14;
const SYST_CVR = 0x18;
const SYST_CALIB = 0x1c;
const ROM_END = 0x4000;
const LAUNCH_PREFIX = [0, 0, 1];

/** One core's SysTick: a 24-bit down counter on the shared clock, its interrupt pended on `core()`. */
export class SysTick {
  constructor(clock, nowNanos, hz, pend) {
    this.clock = clock;
    this.nowNanos = nowNanos; // () => the current time of the core that owns this SysTick
    this.hz = hz; // () => clk_sys
    this.pend = pend;
    this.enable = false;
    this.tickint = false;
    this.clksource = false;
    this.countflag = false;
    this.rvr = 0;
    this.held = 0; // the counter while disabled
    this.t = 0; // anchor: at time t (ns) the counter held v
    this.v = 0;
    this.fired = 0;
    this.alarm = clock.createAlarm(() => this.zero());
  }

  period() {
    return this.clksource ? 1e9 / this.hz() : 1000; // the reference tick is 1 MHz on a Pico
  }

  value(now) {
    if (!this.enable) return this.held;
    const n = Math.floor((now - this.t) / this.period() + 1e-6);
    if (n <= this.v) return this.v - n;
    if (this.rvr === 0) return 0;
    return this.rvr - ((n - this.v - 1) % (this.rvr + 1));
  }

  reanchor(now, v) {
    this.t = now;
    this.v = v;
    this.alarm.cancel();
    if (!this.enable) {
      this.held = v;
      return;
    }
    let at;
    if (v > 0) at = now + v * this.period();
    else if (this.rvr > 0) at = now + (this.rvr + 1) * this.period();
    else return;
    this.alarm.schedule(Math.max(0, at - this.clock.nanos));
  }

  zero() {
    this.countflag = true;
    this.fired++;
    if (this.tickint) this.pend();
    this.reanchor(this.clock.nanos, 0);
  }

  read(offset) {
    const now = this.nowNanos();
    switch (offset) {
      case SYST_CSR: {
        const r = (this.countflag ? 1 << 16 : 0) | (this.clksource ? 4 : 0) | (this.tickint ? 2 : 0) | (this.enable ? 1 : 0);
        this.countflag = false;
        return r;
      }
      case SYST_RVR:
        return this.rvr;
      case SYST_CVR:
        return this.value(now);
      case SYST_CALIB:
        return 0x0000270f;
    }
    return 0;
  }

  write(offset, value) {
    const now = this.nowNanos();
    const cur = this.value(now);
    switch (offset) {
      case SYST_CSR:
        this.clksource = !!(value & 4);
        this.tickint = !!(value & 2);
        this.enable = !!(value & 1);
        this.reanchor(now, cur);
        break;
      case SYST_RVR:
        this.rvr = value & 0xffffff;
        this.reanchor(now, cur);
        break;
      case SYST_CVR:
        this.countflag = false;
        this.reanchor(now, 0);
        break;
    }
  }

  stop() {
    this.alarm.cancel();
  }
}

class CoreState {
  constructor() {
    this.state = 'run'; // 'run' | 'rom' (core 1 in the ROM's launch wait) | 'off' (held in reset)
    this.div = { dividend: 0, divisor: 1, quotient: 0, remainder: 0, csr: 0 };
    this.interp = null; // [interp0, interp1]
    this.rx = []; // this core's RX FIFO (words pushed by the other core)
    this.wof = false;
    this.roe = false;
    this.systick = null;
    this.busy = 0; // cycles spent executing
    this.quantumStart = 0; // the core's cycle count when its current quantum began
    this.seq = 0; // ROM launch handshake: words received so far
    this.launch = [];
    this.launches = 0;
  }
}

export class DualCore {
  /**
   * mcu: an rp2040js RP2040 with the ROM stand-in loaded; rom: buildRom()'s result; romServices: a
   * RomServices for it; note(msg): diagnostics.
   */
  constructor(mcu, rom, romServices, note = () => {}) {
    this.mcu = mcu;
    this.rom = rom;
    this.romServices = romServices;
    this.note = note;
    this.profile = null; // a PcProfile (profile.mjs) to sum each instruction's cycles by address, or null
    this.clock = mcu.clock;
    this.cycleNanos = 1e9 / mcu.clkSys;
    mcu.addClockListener((hz) => {
      this.cycleNanos = 1e9 / hz;
    });
    this.now = 0; // emulated cycles at the start of the current quantum
    this.cur = 0;
    this.cores = [mcu.core, null];
    this.st = [new CoreState(), new CoreState()];
    this.breakHit = null;
    this.sevs = 0;
    this.core1Resets = 0;
    const sio = mcu.sio;
    const Interp = sio.interp0.constructor;
    this.st[0].interp = [sio.interp0, sio.interp1];
    this.st[1].interp = [new Interp(0), new Interp(1)];
    this.st[0].systick = this.newSysTick(0);
    this.hookSio();
    this.hookPpb();
    this.hookPsm();
    this.hookInterrupts();
    mcu.onBreak = (code) => {
      if (this.breakHit === null) this.breakHit = { code, core: this.cur };
    };
    this.resetCore1();
  }

  newSysTick(i) {
    return new SysTick(this.clock, () => this.nowNanos(i), () => this.mcu.clkSys, () => {
      const c = this.cores[i];
      c.pendingSystick = true;
      c.interruptsUpdated = true;
      if (c.waiting && c.checkForInterrupts()) c.waiting = false;
    });
  }

  /** The current time as core i sees it: the clock plus the cycles it has run in this quantum. */
  nowNanos(i) {
    const c = this.cores[i];
    const ahead = c ? Math.max(0, c.cycles - this.now) : 0;
    return this.clock.nanos + ahead * this.cycleNanos;
  }

  // ------------------------------------------------------------------------------ switching cores
  switchTo(i) {
    if (i === this.cur) return;
    const sio = this.mcu.sio;
    const d = this.st[this.cur].div;
    d.dividend = sio.divDividend;
    d.divisor = sio.divDivisor;
    d.quotient = sio.divQuotient;
    d.remainder = sio.divRemainder;
    d.csr = sio.divCSR;
    const n = this.st[i];
    sio.divDividend = n.div.dividend;
    sio.divDivisor = n.div.divisor;
    sio.divQuotient = n.div.quotient;
    sio.divRemainder = n.div.remainder;
    sio.divCSR = n.div.csr;
    sio.interp0 = n.interp[0];
    sio.interp1 = n.interp[1];
    this.mcu.core = this.cores[i];
    this.cur = i;
  }

  // ------------------------------------------------------------------------------------- the SIO
  hookSio() {
    const sio = this.mcu.sio;
    const read = sio.readUint32.bind(sio);
    const write = sio.writeUint32.bind(sio);
    sio.readUint32 = (offset) => {
      switch (offset) {
        case SIO_CPUID:
          return this.cur;
        case SIO_FIFO_ST:
          return this.fifoStatus(this.cur);
        case SIO_FIFO_RD:
          return this.fifoPop(this.cur);
        case SIO_FIFO_WR:
          return 0;
      }
      return read(offset);
    };
    sio.writeUint32 = (offset, value) => {
      switch (offset) {
        case SIO_FIFO_ST: {
          const s = this.st[this.cur];
          if (value & ST_WOF) s.wof = false;
          if (value & ST_ROE) s.roe = false;
          this.fifoIrq(this.cur);
          return;
        }
        case SIO_FIFO_WR:
          this.fifoPush(this.cur, value >>> 0);
          return;
        case SIO_FIFO_RD:
        case SIO_CPUID:
          return;
      }
      write(offset, value);
    };
  }

  fifoStatus(i) {
    const s = this.st[i];
    return (s.rx.length ? ST_VLD : 0) | (this.st[1 - i].rx.length < FIFO_DEPTH ? ST_RDY : 0) |
      (s.wof ? ST_WOF : 0) | (s.roe ? ST_ROE : 0);
  }

  fifoPush(from, value) {
    const to = this.st[1 - from];
    if (to.rx.length >= FIFO_DEPTH) this.st[from].wof = true;
    else to.rx.push(value);
    this.fifoIrq(0);
    this.fifoIrq(1);
  }

  fifoPop(i) {
    const s = this.st[i];
    let v = 0;
    if (s.rx.length) v = s.rx.shift();
    else s.roe = true;
    this.fifoIrq(0);
    this.fifoIrq(1);
    return v;
  }

  fifoIrq(i) {
    const c = this.cores[i];
    if (!c) return;
    const s = this.st[i];
    c.setInterrupt(SIO_IRQ[i], s.rx.length > 0 || s.wof || s.roe);
  }

  // ---------------------------------------------------------------------------- PPB: SysTick per core
  hookPpb() {
    const ppb = this.mcu.ppb;
    const read = ppb.readUint32.bind(ppb);
    const write = ppb.writeUint32.bind(ppb);
    ppb.readUint32 = (offset) => {
      if (offset >= SYST_CSR && offset <= SYST_CALIB) return this.st[this.cur].systick.read(offset);
      return read(offset);
    };
    ppb.writeUint32 = (offset, value) => {
      if (offset >= SYST_CSR && offset <= SYST_CALIB) {
        this.st[this.cur].systick.write(offset, value >>> 0);
        return;
      }
      write(offset, value);
    };
  }

  // ------------------------------------------------------------------------------- PSM: core 1 reset
  hookPsm() {
    const psm = this.mcu.peripherals[0x40010];
    const write = psm.writeUint32.bind(psm);
    psm.writeUint32 = (offset, value) => {
      const before = psm.frceOff;
      write(offset, value);
      if (offset !== PSM_FRCE_OFF) return;
      const after = psm.frceOff;
      if (!(before & PSM_PROC1) && after & PSM_PROC1) this.holdCore1();
      else if (before & PSM_PROC1 && !(after & PSM_PROC1)) this.resetCore1();
    };
  }

  holdCore1() {
    const s = this.st[1];
    s.state = 'off';
    if (s.systick) s.systick.stop();
    const c = this.cores[1];
    if (c) c.waiting = false;
  }

  /** Core 1 out of reset: a fresh core in the ROM, which drains its RX FIFO, pushes 0 to core 0 and waits. */
  resetCore1() {
    const old = this.st[1];
    if (old.systick) old.systick.stop();
    const c = new this.mcu.core.constructor(this.mcu);
    c.cycles = this.cores[0] ? Math.max(this.now, this.cores[0].cycles) : 0;
    c.VTOR = 0;
    c.SP = this.rom.bytes[0] | (this.rom.bytes[1] << 8) | (this.rom.bytes[2] << 16) | (this.rom.bytes[3] << 24);
    c.PC = this.rom.addrOf(RESET);
    this.cores[1] = c;
    const s = new CoreState();
    s.interp = old.interp;
    s.busy = old.busy;
    s.launches = old.launches;
    s.state = 'rom';
    this.st[1] = s;
    s.systick = this.newSysTick(1);
    if (this.cur === 1) this.mcu.core = c;
    this.core1Resets++;
    this.romCore1Boot();
  }

  romCore1Boot() {
    const s = this.st[1];
    s.rx.length = 0;
    s.wof = false;
    s.roe = false;
    s.seq = 0;
    s.launch = [];
    this.fifoPush(1, 0);
    this.wake(0);
  }

  /** Core 1 in the ROM's wait loop: consume launch words, echo each, start the entry on the last. */
  romCore1Wait() {
    const s = this.st[1];
    while (s.state === 'rom' && s.rx.length && this.st[0].rx.length < FIFO_DEPTH) {
      const w = this.fifoPop(1);
      if (s.seq < LAUNCH_PREFIX.length) {
        if (w === LAUNCH_PREFIX[s.seq]) s.seq++;
        else s.seq = w === 0 ? 1 : 0;
        if (w === 0) {
          s.launch = [];
        }
      } else {
        s.launch.push(w);
        s.seq++;
      }
      this.fifoPush(1, w);
      this.wake(0);
      if (s.launch.length === 3) {
        const [vtor, sp, entry] = s.launch;
        s.seq = 0;
        s.launch = [];
        const c = this.cores[1];
        c.VTOR = vtor;
        c.SP = sp;
        c.registers[14] = this.rom.addrOf(CORE1_EXIT) | 1;
        c.PC = entry & ~1;
        s.state = 'run';
        s.launches++;
        // Lines already asserted reach the new core's NVIC (pending; taken once it enables them).
        for (let irq = 0; irq < 32; irq++) if (this.irqLevels & (1 << irq)) c.setInterrupt(irq, true);
      }
    }
  }

  /** ROM entry reached by core 1 returning from its launched function: back to the wait loop. */
  core1Exit(core) {
    if (core !== this.cores[1]) throw new RomError('core 0 reached the ROM entry for core 1 returning from its entry');
    this.note('core 1 returned from its entry function: back in the ROM waiting for a launch');
    this.st[1].state = 'rom';
    this.st[1].seq = 0;
    return 0;
  }

  romReset(core) {
    throw new RomError(`core ${core === this.cores[1] ? 1 : 0} jumped to the ROM's reset entry`);
  }

  // ---------------------------------------------------------------------------- interrupts and events
  hookInterrupts() {
    const mcu = this.mcu;
    this.irqLevels = 0; // peripheral interrupt lines asserted now
    mcu.setInterrupt = (irq, value) => {
      if (value) this.irqLevels |= 1 << irq;
      else this.irqLevels &= ~(1 << irq);
      this.cores[0].setInterrupt(irq, value);
      const c1 = this.cores[1];
      if (c1 && this.st[1].state === 'run') c1.setInterrupt(irq, value);
    };
  }

  /** SEV executed by the current core: the other wakes from WFE, or its event flag is set. */
  sev() {
    this.sevs++;
    this.wake(1 - this.cur);
  }

  wake(i) {
    const c = this.cores[i];
    if (!c || this.st[i].state !== 'run') return;
    if (c.waiting) c.waiting = false;
    else c.eventRegistered = true;
  }

  // ---------------------------------------------------------------------------------- running
  get allWaiting() {
    const c0 = this.cores[0];
    if (!c0.waiting) return false;
    const s1 = this.st[1];
    if (s1.state === 'run') return this.cores[1].waiting;
    if (s1.state === 'rom') return s1.rx.length === 0;
    return true;
  }

  /**
   * Runs one lockstep quantum of both cores and advances the clock. Returns 'ok', 'break' (a BKPT/UDF:
   * see breakHit), 'stop' (a ROM function that does not return was called), or 'sleep' (both cores wait and no alarm is scheduled: only outside input can wake
   * them). Throws RomError for a call into the ROM that is not served.
   */
  step() {
    if (this.allWaiting && !this.cores[0].interruptsUpdated &&
        !(this.st[1].state === 'run' && this.cores[1].interruptsUpdated)) {
      // Both cores sleep: jump to the next alarm.
      if (this.clock.nextAlarm === null) return 'sleep';
      const dt = this.clock.nanosToNextAlarm;
      const cycles = Math.max(1, Math.ceil(dt / this.cycleNanos));
      this.now += cycles;
      for (const c of this.cores) if (c && c.cycles < this.now) c.cycles = this.now;
      this.clock.tick(cycles * this.cycleNanos);
      return 'ok';
    }
    const end = this.now + QUANTUM;
    for (let i = 0; i < 2; i++) {
      const s = this.st[i];
      if (s.state === 'rom') this.romCore1Wait();
      let c = this.cores[i];
      if (s.state !== 'run') {
        if (c && c.cycles < end) c.cycles = end;
        continue;
      }
      this.switchTo(i);
      s.quantumStart = c.cycles;
      while (c.cycles < end) {
        if (c.waiting) {
          if (c.interruptsUpdated && c.checkForInterrupts()) {
            c.waiting = false;
          } else {
            c.cycles = end;
            break;
          }
        }
        const pc = c.registers[15];
        if (pc < ROM_END) {
          s.busy += this.romServices.serve(c, pc);
          if (this.romServices.stopped) return 'stop';
          if (s.state !== 'run') break; // core 1 went back to the ROM's wait loop
          continue;
        }
        const spent = c.executeInstruction();
        s.busy += spent;
        if (this.profile !== null) this.profile.add(i, pc, spent);
        if (this.breakHit !== null) return 'break';
      }
      c = this.cores[i];
      if (c.cycles < end && s.state === 'run') c.cycles = end;
    }
    this.clock.tick((end - this.now) * this.cycleNanos);
    this.now = end;
    return 'ok';
  }
}

