"""Codebook weights: a clustered CONV_2D filter stored as ``bits``-bit indices plus a table of int8 values.

The recipe's int8 ``.tflite`` stays the host reference (host TFLM verifies it). For the device, each
eligible CONV_2D filter buffer is replaced by its codebook: the table (``2**bits`` int8 values, one
table per output channel, or one for the whole tensor when every channel uses the same values), then
the indices, ``bits`` bits each, least significant first, in exactly the order the dense kernel
reads its int8 weights (OHWI). The tensor keeps its int8 type, shape and quantization, and its
buffer keeps data, so TFLM treats it as a constant in flash (never an arena tensor). The firmware
(``firmware/src/kernels/codebook.c``) recognises the buffer by its address and decodes one group of
output channels at a time into a small scratch. Each encoding is proved: decoding it gives the
original bytes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.errors import PipelineError

INDEX_BITS = (2, 4)  # widths that pack whole indices into a byte (the decoder's shifts)


@dataclass(frozen=True)
class Codebook:
    """One encoded filter: where its bytes sit in the device flatbuffer and how to read them."""

    op: int  # operator index in subgraph 0
    offset: int  # byte offset of the buffer data (table first) in the device flatbuffer
    channels: int  # output channels
    k: int  # weights per output channel
    bits: int
    entries: int  # values in each table (at most 2**bits)
    per_channel: bool  # one table per output channel (else one for the tensor)
    table_bytes: int
    index_bytes: int
    dense_bytes: int  # the int8 filter it replaces

    @property
    def stored_bytes(self) -> int:
        return self.table_bytes + self.index_bytes


def pack_indices(idx: np.ndarray, bits: int) -> bytes:
    """``bits``-bit indices, least significant first, ``8 // bits`` a byte (the last byte zero-padded)."""
    per = 8 // bits
    flat = np.asarray(idx, dtype=np.uint8).reshape(-1)
    pad = (-flat.size) % per
    flat = np.concatenate([flat, np.zeros(pad, np.uint8)]).reshape(-1, per)
    out = np.zeros(flat.shape[0], np.uint8)
    for j in range(per):
        out |= (flat[:, j] << (j * bits)).astype(np.uint8)
    return out.tobytes()


def decode(table: np.ndarray, index: bytes, channels: int, k: int, bits: int, per_channel: bool) -> np.ndarray:
    # table: one row of entries per channel (per_channel) or one row
    """The int8 weights (channels x k) a codebook holds: what the firmware's decoder computes."""
    per = 8 // bits
    raw = np.frombuffer(index, np.uint8)
    idx = np.stack([(raw >> (j * bits)) & ((1 << bits) - 1) for j in range(per)], axis=1).reshape(-1)
    idx = idx[: channels * k].reshape(channels, k)
    t = np.asarray(table, np.int8).reshape(channels if per_channel else 1, -1)
    rows = np.arange(channels)[:, None] if per_channel else np.zeros((channels, 1), np.intp)
    return t[rows, idx]


def encode_filter(w: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray, bool] | None:
    """(table, indices, per_channel) of an int8 filter (channels x k) with at most ``2**bits`` values per
    channel, or None when it has more. A shared table when the whole tensor has that few values; else a
    table per channel, each as long as the most values of any channel."""
    values = np.unique(w)
    if values.size <= 1 << bits:
        idx = np.searchsorted(values, w)
        return values.astype(np.int8), idx.astype(np.uint8), False
    size = max(np.unique(w[c]).size for c in range(w.shape[0]))
    if size > 1 << bits:
        return None
    tables = np.zeros((w.shape[0], size), np.int8)
    idx = np.zeros(w.shape, np.uint8)
    for c in range(w.shape[0]):
        v = np.unique(w[c])
        tables[c, : v.size] = v
        idx[c] = np.searchsorted(v, w[c])
    return tables.reshape(-1), idx, True


def encode(tflite: bytes, bits: int) -> tuple[bytes, list[Codebook]]:
    """The device flatbuffer with every CONV_2D int8 filter that has at most ``2**bits`` values per
    output channel stored as a codebook, and those codebooks. Filters with more values stay int8 (the
    clustering stage left them unclustered: the first or last layer, say)."""
    if bits not in INDEX_BITS:
        raise PipelineError(f"codebook index width {bits} bits is not supported",
                            hint=f"use one of {', '.join(map(str, INDEX_BITS))}")
    from pipeline.tflite.reader import load_tflite
    from pipeline.tflite.slim import aligned_builder, slim_with

    schema, model = load_tflite(tflite)
    sg = model.subgraphs[0]
    codes = [max(int(oc.builtinCode or 0), int(oc.deprecatedBuiltinCode or 0)) for oc in model.operatorCodes]
    used: dict[int, int] = {}  # buffer -> op whose filter it holds
    for sg_ in model.subgraphs:
        for op in sg_.operators or []:
            for i in list(op.inputs if op.inputs is not None else []):
                if i >= 0:
                    b = sg_.tensors[i].buffer
                    used[b] = used.get(b, 0) + 1
    plan: list[dict] = []
    for n, op in enumerate(sg.operators or []):
        if codes[op.opcodeIndex] != schema.BuiltinOperator.CONV_2D or op.inputs is None or len(op.inputs) < 2:
            continue
        t = sg.tensors[op.inputs[1]]
        buf = model.buffers[t.buffer] if 0 <= t.buffer < len(model.buffers) else None
        if t.type != schema.TensorType.INT8 or buf is None or buf.data is None or used.get(t.buffer, 0) != 1:
            continue
        channels, k = int(t.shape[0]), int(np.prod(t.shape[1:]))
        raw = np.asarray(buf.data, np.uint8)
        if raw.size != channels * k:
            continue
        w = raw.view(np.int8).reshape(channels, k)
        enc = encode_filter(w, bits)
        if enc is None:
            continue
        table, idx, per_channel = enc
        index = pack_indices(idx, bits)
        if not np.array_equal(decode(table, index, channels, k, bits, per_channel), w):
            raise PipelineError(f"the codebook of operator {n} does not decode to its weights", hint="this is a bug")
        payload = table.tobytes() + index
        if len(payload) >= raw.size:
            continue  # no smaller than the int8 filter
        buf.data = np.frombuffer(payload, np.uint8).copy()
        plan.append({"op": n, "buffer": t.buffer, "channels": channels, "k": k, "per_channel": per_channel,
                     "entries": table.size // (channels if per_channel else 1),
                     "table_bytes": table.size, "index_bytes": len(index), "dense_bytes": int(raw.size),
                     "payload": payload})
    if not plan:
        return tflite, []
    builder = aligned_builder(len(tflite))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    out = slim_with(bytes(builder.Output()), ("dedup",))  # shared vectors again, as the converter's slim wrote them
    offsets = filter_offsets(out)
    books = []
    for p in plan:
        off = offsets[p["op"]]
        if out[off:off + len(p["payload"])] != p["payload"]:
            raise PipelineError("a codebook buffer moved while the model was written", hint="this is a bug")
        books.append(Codebook(op=p["op"], offset=off, channels=p["channels"], k=p["k"], bits=bits, entries=p["entries"],
                              per_channel=p["per_channel"], table_bytes=p["table_bytes"],
                              index_bytes=p["index_bytes"], dense_bytes=p["dense_bytes"]))
    return out, books


def filter_offsets(tflite: bytes) -> dict[int, int]:
    """Byte offset, in a flatbuffer, of the data of each operator's input 1 (subgraph 0), where it has data."""
    from pipeline.tflite.reader import load_schema

    schema = load_schema()
    m = schema.Model.GetRootAs(tflite, 0)
    sg = m.Subgraphs(0)
    out = {}
    for n in range(sg.OperatorsLength()):
        op = sg.Operators(n)
        if op.InputsLength() < 2 or op.Inputs(1) < 0:
            continue
        b = m.Buffers(sg.Tensors(op.Inputs(1)).Buffer())
        o = b._tab.Offset(4)  # Buffer.data, field 0
        if o and b.DataLength():
            out[n] = b._tab.Vector(o)
    return out


def weight_bytes(tflite: bytes) -> int:
    """Bytes of every constant weight of CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED filters (input 1)."""
    from pipeline.tflite.reader import load_tflite

    schema, model = load_tflite(tflite)
    wanted = {schema.BuiltinOperator.CONV_2D, schema.BuiltinOperator.DEPTHWISE_CONV_2D,
              schema.BuiltinOperator.FULLY_CONNECTED}
    codes = [max(int(oc.builtinCode or 0), int(oc.deprecatedBuiltinCode or 0)) for oc in model.operatorCodes]
    total = 0
    for sg in model.subgraphs:
        for op in sg.operators or []:
            if codes[op.opcodeIndex] in wanted and op.inputs is not None and len(op.inputs) > 1 and op.inputs[1] >= 0:
                b = model.buffers[sg.tensors[op.inputs[1]].buffer]
                total += 0 if b.data is None else len(b.data)
    return total


def device_figures(tflite: bytes, bits: int) -> tuple[bytes, dict]:
    """The device flatbuffer (``encode``'s, or ``tflite`` itself for ``bits`` 8) and its bytes as stored on
    the device: the whole .tflite, and the filter weights (int8 filters plus codebooks' tables and indices)."""
    dev, books = encode(tflite, bits) if bits < 8 else (tflite, [])
    return dev, {
        "index_bits": bits,
        "device_tflite_bytes": len(dev),
        "device_weight_bytes": weight_bytes(dev),
        "int8_weight_bytes": weight_bytes(tflite),
        "codebooks": [{"op": b.op, "bits": b.bits, "per_channel": b.per_channel, "entries": b.entries,
                       "stored_bytes": b.stored_bytes, "int8_bytes": b.dense_bytes} for b in books],
    }
