"""A model altered on purpose, for the layer-by-layer tests: one op's weights negated."""
from __future__ import annotations

import numpy as np

from pipeline.tflite.reader import load_tflite
from pipeline.tflite.slim import aligned_builder


def negate_weights(tflite: bytes, op_index: int) -> bytes:
    """The same model with op ``op_index``'s weight tensor (input 1, int8) negated: that op's output, and
    usually every later one, changes; the ops before it do not."""
    _schema, model = load_tflite(tflite)
    sg = model.subgraphs[0]
    t = sg.tensors[int(sg.operators[op_index].inputs[1])]
    buf = model.buffers[t.buffer]
    w = np.asarray(buf.data, dtype=np.uint8).view(np.int8)
    assert w.size > 0, "that op's weights are not a constant buffer"
    buf.data = np.clip(-w.astype(np.int16), -127, 127).astype(np.int8).view(np.uint8)
    b = aligned_builder(len(tflite) + 1024)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())
