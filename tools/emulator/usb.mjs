// The USB host side of a CDC ACM serial port, on rp2040js's device-mode USB controller: what a PC does
// when a Pico running stdio_usb is plugged in, reduced to what the bridge needs.
//   enumeration: bus reset, SET_ADDRESS, GET_DESCRIPTOR(device), GET_DESCRIPTOR(configuration) (header,
//   then whole), SET_CONFIGURATION 1, SET_LINE_CODING 115200 8N1, SET_CONTROL_LINE_STATE DTR|RTS;
//   every control transfer with its status stage;
//   data: the CDC data interface's bulk IN endpoint -> onData(bytes); bytes given to send() go out on
//   the bulk OUT endpoint whenever the device has a buffer armed (a host NAKs until then, so nothing
//   is dropped and no empty packets are handed to the device);
//   reconnects: the controller being enabled again, or the device's pull-up coming back (tud_disconnect
//   / tud_connect, a firmware restart), starts enumeration over.
const SIE_CTRL = 0x4c;
const SIE_PULLUP_EN = 1 << 16;
const EP0_SIZE = 64;
const GAP_NANOS = 50_000; // 50 us between control transfers

const REQ_SET_ADDRESS = 5;
const REQ_GET_DESCRIPTOR = 6;
const REQ_SET_CONFIGURATION = 9;
const CDC_SET_LINE_CODING = 0x20;
const CDC_SET_CONTROL_LINE_STATE = 0x22;
const DESC_DEVICE = 1;
const DESC_CONFIGURATION = 2;
const DESC_INTERFACE = 4;
const DESC_ENDPOINT = 5;
const CLASS_CDC = 2;
const CLASS_CDC_DATA = 10;

function setup(bmRequestType, bRequest, wValue, wIndex, wLength) {
  return new Uint8Array([bmRequestType, bRequest, wValue & 0xff, wValue >> 8, wIndex & 0xff, wIndex >> 8,
    wLength & 0xff, wLength >> 8]);
}

/** Bulk endpoints of the first CDC data interface, and the number of the CDC control interface. */
export function cdcEndpoints(desc) {
  const out = { in: -1, out: -1, commInterface: 0 };
  let inData = false;
  for (let i = 0; i + 1 < desc.length && desc[i] >= 2; i += desc[i]) {
    const len = desc[i];
    const type = desc[i + 1];
    if (type === DESC_INTERFACE && len >= 9) {
      const cls = desc[i + 5];
      if (cls === CLASS_CDC && out.in < 0) out.commInterface = desc[i + 2];
      inData = cls === CLASS_CDC_DATA && out.in < 0;
    } else if (type === DESC_ENDPOINT && len >= 7 && inData && (desc[i + 3] & 3) === 2) {
      const addr = desc[i + 2];
      if (addr & 0x80) out.in = addr & 0xf;
      else out.out = addr & 0xf;
    }
  }
  return out;
}

export class CdcHost {
  /** usb: mcu.usbCtrl; note(msg): diagnostics; onData(Uint8Array): bytes from the device. */
  constructor(usb, { note = () => {}, onData = () => {}, verbose = false } = {}) {
    this.usb = usb;
    this.note = note;
    this.onData = onData;
    this.verbose = verbose;
    this.txQueue = []; // Uint8Array chunks waiting for the device's OUT endpoint
    this.txBytes = 0;
    this.rxBytes = 0;
    this.enumerations = 0;
    // The next control transfer starts a little after the last one ended, so that a status-stage packet
    // handed to the device (delivered after rp2040js's read delay) lands before the next SETUP.
    this.nextDue = false;
    this.nextAlarm = usb.rp2040.clock.createAlarm(() => {
      this.nextDue = false;
      if (this.ctrl === null) this.nextControl();
    });
    this.restart('init');
    usb.onUSBEnabled = () => this.restart('controller enabled');
    usb.onResetReceived = () => this.afterBusReset();
    usb.onEndpointWrite = (ep, buf) => this.deviceWrote(ep, buf);
    usb.onEndpointRead = (ep, size) => this.deviceArmed(ep, size);
    const write = usb.writeUint32.bind(usb);
    usb.writeUint32 = (offset, value) => {
      const before = usb.sieCtrl;
      write(offset, value);
      if (offset === SIE_CTRL) {
        const after = usb.sieCtrl;
        if (!(before & SIE_PULLUP_EN) && after & SIE_PULLUP_EN) this.restart('device connected');
        else if (before & SIE_PULLUP_EN && !(after & SIE_PULLUP_EN)) this.disconnected();
      }
    };
  }

  get ready() {
    return this.state === 'ready';
  }

  restart(why) {
    this.state = 'reset';
    this.cancelNext();
    this.ctrl = null;
    this.ctrlQueue = [];
    this.pendingOut = new Map(); // endpoint -> armed size
    this.ep = { in: -1, out: -1, commInterface: 0 };
    if (why !== 'init') {
      if (this.verbose) this.note(`usb: ${why}: bus reset`);
      this.usb.resetDevice();
    }
  }

  disconnected() {
    this.cancelNext();
    if (this.verbose || this.state === 'ready') this.note('usb: the device disconnected');
    this.state = 'detached';
    this.ctrl = null;
    this.ctrlQueue = [];
    this.pendingOut = new Map();
  }

  afterBusReset() {
    this.cancelNext();
    this.state = 'enumerating';
    this.enumerations++;
    this.ctrlQueue = [];
    this.ctrl = null;
    this.pendingOut = new Map();
    this.control(setup(0x00, REQ_SET_ADDRESS, 1, 0, 0));
    this.control(setup(0x80, REQ_GET_DESCRIPTOR, DESC_DEVICE << 8, 0, 18), (d) => {
      if (d.length >= 8 && this.verbose) this.note(`usb: device descriptor ${Buffer.from(d).toString('hex')}`);
    });
    this.control(setup(0x80, REQ_GET_DESCRIPTOR, DESC_CONFIGURATION << 8, 0, 9), (d) => {
      const total = d.length >= 4 ? d[2] | (d[3] << 8) : 9;
      this.control(setup(0x80, REQ_GET_DESCRIPTOR, DESC_CONFIGURATION << 8, 0, total), (all) => {
        this.ep = cdcEndpoints(all);
        if (this.ep.in < 0 || this.ep.out < 0) {
          this.note('usb: the device has no CDC data interface with two bulk endpoints');
          this.state = 'unsupported';
          return;
        }
        const itf = this.ep.commInterface;
        this.control(setup(0x00, REQ_SET_CONFIGURATION, 1, 0, 0));
        this.control(setup(0x21, CDC_SET_LINE_CODING, 0, itf, 7), null, new Uint8Array([0x00, 0xc2, 0x01, 0x00, 0, 0, 8]));
        this.control(setup(0x21, CDC_SET_CONTROL_LINE_STATE, 3, itf, 0), () => {
          this.state = 'ready';
          if (this.verbose) this.note(`usb: CDC ready (bulk IN ${this.ep.in}, OUT ${this.ep.out})`);
          this.pump();
        });
      });
    });
  }

  // ------------------------------------------------------------------------------ control transfers
  control(packet, done = null, outData = null) {
    this.ctrlQueue.push({ packet, done, outData, in: !!(packet[0] & 0x80), length: packet[6] | (packet[7] << 8), data: [], phase: 'setup' });
    if (this.ctrl === null && !this.nextDue) this.scheduleNext();
  }

  scheduleNext() {
    this.nextDue = true;
    this.nextAlarm.schedule(GAP_NANOS);
  }

  cancelNext() {
    this.nextDue = false;
    if (this.nextAlarm) this.nextAlarm.cancel();
  }

  nextControl() {
    this.ctrl = this.ctrlQueue.shift() ?? null;
    if (this.ctrl === null) return;
    const t = this.ctrl;
    t.phase = t.in ? 'data-in' : t.outData ? 'data-out' : 'status-in';
    this.usb.sendSetupPacket(t.packet);
    if (t.phase === 'data-out' && this.pendingOut.has(0)) this.deviceArmed(0, this.pendingOut.get(0));
  }

  finishControl() {
    const t = this.ctrl;
    this.ctrl = null;
    if (t.done) t.done(Uint8Array.from(t.data));
    if (this.ctrl === null && this.ctrlQueue.length) this.scheduleNext();
  }

  deviceWrote(ep, buf) {
    if (ep === 0) {
      const t = this.ctrl;
      if (t === null) return;
      if (t.phase === 'data-in') {
        t.data.push(...buf);
        if (buf.length < EP0_SIZE || t.data.length >= t.length) {
          t.phase = 'status-out';
          if (this.pendingOut.has(0)) this.deviceArmed(0, this.pendingOut.get(0));
        }
      } else if (t.phase === 'status-in' && buf.length === 0) {
        this.finishControl();
      }
      return;
    }
    if (ep === this.ep.in && this.state === 'ready') {
      this.rxBytes += buf.length;
      if (buf.length) this.onData(buf);
    }
  }

  deviceArmed(ep, size) {
    if (ep === 0) {
      const t = this.ctrl;
      if (t && t.phase === 'status-out') {
        this.pendingOut.delete(0);
        t.phase = 'done';
        this.usb.endpointReadDone(0, new Uint8Array(0));
        this.finishControl();
      } else if (t && t.phase === 'data-out') {
        this.pendingOut.delete(0);
        t.phase = 'status-in';
        this.usb.endpointReadDone(0, t.outData.subarray(0, size));
      } else {
        this.pendingOut.set(0, size);
      }
      return;
    }
    this.pendingOut.set(ep, size);
    if (ep === this.ep.out) this.pump();
  }

  // ----------------------------------------------------------------------------------- bulk OUT
  send(bytes) {
    if (bytes.length === 0) return;
    this.txQueue.push(Uint8Array.from(bytes));
    this.pump();
  }

  get pending() {
    return this.txQueue.length > 0;
  }

  pump() {
    if (this.state !== 'ready' || !this.pendingOut.has(this.ep.out) || this.txQueue.length === 0) return;
    const size = this.pendingOut.get(this.ep.out);
    this.pendingOut.delete(this.ep.out);
    const chunk = [];
    while (chunk.length < size && this.txQueue.length) {
      const head = this.txQueue[0];
      const take = Math.min(size - chunk.length, head.length);
      for (let i = 0; i < take; i++) chunk.push(head[i]);
      if (take === head.length) this.txQueue.shift();
      else this.txQueue[0] = head.subarray(take);
    }
    this.txBytes += chunk.length;
    this.usb.endpointReadDone(this.ep.out, Uint8Array.from(chunk));
  }
}
