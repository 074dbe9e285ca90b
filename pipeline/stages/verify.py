"""Host TFLM verification of a ``.tflite``: accuracy, agreement with TFLite, minimal arena.

Uses the real TFLM interpreter (PyPI ``tflite-micro``), the same kernel code the firmware runs
(reference kernels on the host; the board adds CMSIS-NN). Every figure here is labelled *host*:
the arena in particular is measured by a 64-bit build; the RP2040 figure comes from the board.
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from pipeline.config import VerifyConfig
from pipeline.tflite.reader import ModelInfo, inspect_tflite
from pipeline.errors import PipelineError

ARENA_ALIGN = 16
_ALLOC_LINE = re.compile(r"'(?P<what>[^']+)' used (?P<used>\d+) bytes with alignment overhead \(requested (?P<req>\d+) bytes for (?P<n>\d+)")


@contextlib.contextmanager
def capture_fd2() -> Iterator[list[str]]:
    """Capture what C code writes to file descriptor 2 (TFLM's MicroPrintf) into a list of lines."""
    lines: list[str] = []
    with tempfile.TemporaryFile() as sink:
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().decode("utf-8", "replace").splitlines())


def _runtime():
    from tflite_micro.python.tflite_micro import runtime

    return runtime


def make_interpreter(data: bytes, arena_bytes: int):
    """A TFLM interpreter; PipelineError with TFLM's own reason when it cannot be set up."""
    runtime = _runtime()
    with capture_fd2() as log:
        try:
            return runtime.Interpreter.from_bytes(data, arena_size=int(arena_bytes))
        except (RuntimeError, ValueError) as e:
            err = e
    detail = "; ".join(line.strip() for line in log if line.strip())[:300]
    raise PipelineError(f"host TFLM could not load the model ({err}): {detail or 'no detail'}",
                        hint="check the model's operators and the arena size")


def input_dtype(info: ModelInfo) -> np.dtype:
    """The numpy type of the model's input tensor (int8, int16, float32, ...)."""
    from pipeline.stages.inputs import NUMPY_TYPES

    return np.dtype(NUMPY_TYPES.get(info.input.dtype, np.float32))


def quantize_input(x: np.ndarray, info: ModelInfo) -> np.ndarray:
    """Float input in [0, 1] -> the model's int8 input tensor values."""
    if info.input.dtype != "INT8":
        return x.astype(np.float32)
    scale = info.input.scale[0]
    zp = info.input.zero_point[0]
    return np.clip(np.round(x / scale + zp), -128, 127).astype(np.int8)


def images_to_input(images_u8: np.ndarray, info: ModelInfo) -> np.ndarray:
    """uint8 images [N,H,W,C] -> model input tensor values (the same mapping the board is sent)."""
    return quantize_input(images_u8.astype(np.float32) / 255.0, info)


def run_tflm(data: bytes, inputs: np.ndarray, arena_bytes: int) -> tuple[np.ndarray, list[float]]:
    """Outputs of host TFLM for each input row, and the invoke time of each (seconds, host)."""
    ip = make_interpreter(data, arena_bytes)
    outs = []
    times = []
    for row in inputs:
        ip.set_input(row[None, ...], 0)  # TFLM overwrites its input during Invoke: set it every time
        t0 = time.perf_counter()
        ip.invoke()
        times.append(time.perf_counter() - t0)
        outs.append(np.array(ip.get_output(0)).reshape(-1))
    return np.stack(outs), times


def run_tflite_reference(data: bytes, inputs: np.ndarray) -> np.ndarray:
    """Outputs of the TFLite interpreter with its reference kernels (not XNNPACK). A per-channel
    tensor with one zero point (the slim step's ``zero_points``, which TFLM reads and TFLite refuses)
    is given to TFLite with its zero point repeated for every channel: the same model."""
    import warnings

    from pipeline.tflite.slim import expand_zero_points

    data = expand_zero_points(data)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import tensorflow as tf

        ip = tf.lite.Interpreter(
            model_content=data, experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF
        )
    ip.allocate_tensors()
    i_idx = ip.get_input_details()[0]["index"]
    o_idx = ip.get_output_details()[0]["index"]
    outs = []
    for row in inputs:
        ip.set_tensor(i_idx, row[None, ...])
        ip.invoke()
        outs.append(ip.get_tensor(o_idx).reshape(-1).copy())
    return np.stack(outs)


def _fits(data: bytes, arena: int, probe: np.ndarray) -> bool:
    runtime = _runtime()
    with capture_fd2():
        try:
            ip = runtime.Interpreter.from_bytes(data, arena_size=arena)
            ip.set_input(probe, 0)
            ip.invoke()
            return True
        except (RuntimeError, ValueError):
            return False


def minimal_arena(data: bytes, info: ModelInfo, max_bytes: int = 1 << 20) -> int:
    """Smallest arena (multiple of 16 B) at which host TFLM allocates *and* invokes (host, 64-bit)."""
    probe = np.zeros([1] + info.input.shape[1:], dtype=input_dtype(info))
    hi = max_bytes - max_bytes % ARENA_ALIGN
    if not _fits(data, hi, probe):
        make_interpreter(data, hi)  # raises with TFLM's own reason when it cannot even set up
        raise PipelineError(
            f"host TFLM cannot run the model even with a {hi:,} B arena",
            hint="raise verify.max_arena_bytes, or the model is too large for a microcontroller",
        )
    lo = 0  # lo never fits, hi always fits
    while hi - lo > ARENA_ALIGN:
        mid = (lo + hi) // 2
        mid -= mid % ARENA_ALIGN
        if mid <= lo:
            break
        if _fits(data, mid, probe):
            hi = mid
        else:
            lo = mid
    return hi


def arena_allocations(data: bytes, arena_bytes: int) -> dict[str, Any]:
    """Host TFLM's allocation print-out, parsed: total/head/tail bytes and each allocation kind."""
    info = inspect_tflite(data)
    ip = make_interpreter(data, arena_bytes)
    ip.set_input(np.zeros([1] + info.input.shape[1:], dtype=input_dtype(info)), 0)
    ip.invoke()
    with capture_fd2() as log:
        ip.print_allocations()
    return parse_allocations(log)


def parse_allocations(lines: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"kinds": []}
    for line in lines:
        m = re.search(r"Arena allocation (total|head|tail) (\d+) bytes", line)
        if m:
            out[f"{m.group(1)}_bytes"] = int(m.group(2))
            continue
        m = _ALLOC_LINE.search(line)
        if m:
            out["kinds"].append({"what": m.group("what"), "used_bytes": int(m.group("used")),
                                 "requested_bytes": int(m.group("req")), "count": int(m.group("n"))})
    return out


@dataclass
class VerifyResult:
    metrics: dict[str, Any]
    tflm_outputs: np.ndarray  # raw outputs on the test split (for golden data and reports)


def verify(data: bytes, test_images: np.ndarray, test_labels: np.ndarray, cfg: VerifyConfig,
           class_names: list[str] | None = None) -> VerifyResult:
    """Verify a ``.tflite`` with host TFLM on the test split and against TFLite's reference kernels."""
    info = inspect_tflite(data)
    if len(test_images) == 0:
        raise PipelineError("the test split is empty", hint="use more samples per class")
    expected = [1] + list(test_images.shape[1:])
    if list(info.input.shape) != expected:
        raise PipelineError(
            f"the model's input shape {info.input.shape} does not match the data {expected}",
            hint="use images of the model's input size (data.image_size)",
        )
    return verify_inputs(data, images_to_input(test_images, info), test_labels, cfg, class_names)


def _agreement(tflm: np.ndarray, ref: np.ndarray) -> dict[str, Any]:
    """How far host TFLM's outputs are from TFLite's: exact rate, max abs diff, how many inputs differ."""
    wide = np.float64 if np.issubdtype(tflm.dtype, np.floating) else np.int32
    diff = np.abs(tflm.astype(wide) - ref.astype(wide))
    max_diff = float(diff.max()) if np.issubdtype(tflm.dtype, np.floating) else int(diff.max())
    differ = int(np.sum(np.any(diff != 0, axis=1)))
    return {
        "inputs": int(len(tflm)),
        "bit_exact_rate": float(np.mean(np.all(diff == 0, axis=1))),
        "max_abs_diff": max_diff,
        "inputs_differing": differ,
        "top1_agreement": float(np.mean(tflm.argmax(1) == ref.argmax(1))),
        "reference": "TFLite interpreter, BUILTIN_REF kernels",
    }


def agreement_warning(agreement: dict[str, Any], output_dtype: str) -> str | None:
    """One plain sentence when host TFLM and TFLite compute the model differently (None when they agree
    to within what the int8 kernels are known to round differently: 1 LSB on an integer output)."""
    if "max_abs_diff" not in agreement:
        return None
    d = agreement["max_abs_diff"]
    if d <= (1e-4 if output_dtype == "FLOAT32" else 1):
        return None
    return (f"host TFLM and TFLite (reference kernels) compute this model differently: outputs differ on "
            f"{agreement['inputs_differing']} of {agreement['inputs']} inputs, max abs diff {d:g}; top-1 agrees on "
            f"{agreement['top1_agreement']:.0%}. The board runs TFLM's kernels and is checked against host TFLM, "
            "so it will compute what TFLM computes; look for an operator TFLM implements differently (e.g. "
            "SPACE_TO_BATCH_ND from a dilated convolution)")


def verify_inputs(data: bytes, x: np.ndarray, labels: np.ndarray | None, cfg: VerifyConfig,
                  class_names: list[str] | None = None) -> VerifyResult:
    """Verify a ``.tflite`` with host TFLM on ready input tensors ``x`` (accuracy only when ``labels``
    are given) and against TFLite's reference kernels on some of them plus seeded random inputs."""
    info = inspect_tflite(data)
    if len(x) == 0:
        raise PipelineError("there are no inputs to verify with", hint="give at least one input")
    arena_min = minimal_arena(data, info, cfg.max_arena_bytes)
    allocations = arena_allocations(data, arena_min)

    t0 = time.perf_counter()
    outs, times = run_tflm(data, x, arena_min)
    tflm_seconds = time.perf_counter() - t0
    accuracy = None
    confusion = None
    if labels is not None:
        labels = np.asarray(labels).astype(int)
        pred = outs.argmax(axis=1)
        accuracy = float(np.mean(pred == labels))
        n_classes = max(int(outs.shape[1]), int(labels.max()) + 1)
        confusion = np.zeros((n_classes, n_classes), dtype=int)
        for t, p in zip(labels, pred):
            confusion[t, p] += 1
        confusion = confusion.tolist()

    # TFLM vs TFLite reference kernels: test inputs plus seeded random inputs.
    rng = np.random.default_rng(cfg.seed)
    k = min(cfg.reference_samples, len(x))
    idx = rng.choice(len(x), size=k, replace=False)
    n_noise = max(1, cfg.reference_samples // 4)
    if info.input.dtype == "INT8":
        noise = rng.integers(-128, 128, size=(n_noise,) + x.shape[1:], dtype=np.int16).astype(np.int8)
    elif np.issubdtype(x.dtype, np.integer):
        ii = np.iinfo(x.dtype)
        noise = rng.integers(ii.min, int(ii.max) + 1, size=(n_noise,) + x.shape[1:], dtype=np.int64).astype(x.dtype)
    else:
        noise = rng.random((n_noise,) + x.shape[1:]).astype(x.dtype)
    ref_in = np.concatenate([x[idx], noise])
    tflm_ref_out, _ = run_tflm(data, ref_in, arena_min)
    try:
        tflite_out = run_tflite_reference(data, ref_in)
    except (ValueError, RuntimeError) as e:  # e.g. INT4 kernels the TFLite reference resolver lacks
        tflite_out = None
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if tflite_out is not None:
        agreement = _agreement(tflm_ref_out, tflite_out)
    else:
        agreement = {"inputs": int(len(ref_in)), "reference": "TFLite interpreter, BUILTIN_REF kernels",
                     "not_measured": f"the TFLite interpreter cannot run this model: {why}"}
    warning = agreement_warning(agreement, info.output.dtype)
    metrics = {
        "where": "host TFLM (tflite-micro Python interpreter, 64-bit)",
        "tflm_test_accuracy": accuracy,
        "test_samples": int(len(x)),
        "confusion_matrix": confusion,
        "class_names": list(class_names) if class_names else None,
        "tflm_vs_tflite": agreement,
        "host_arena_min_bytes": arena_min,
        "host_arena_allocations": allocations,
        "host_invoke_ms_median": float(np.median(times) * 1e3),
        "host_test_split_seconds": tflm_seconds,
        "model_bytes": info.size_bytes,
        "weight_bytes": info.weight_bytes,
        "constant_bytes": info.constant_bytes,
        "macs": info.macs,
        "ops": info.ops,
        "input": {"dtype": info.input.dtype, "shape": info.input.shape, "scale": info.input.scale,
                  "zero_point": info.input.zero_point},
        "output": {"dtype": info.output.dtype, "shape": info.output.shape, "scale": info.output.scale,
                   "zero_point": info.output.zero_point},
        "layers": [vars(layer) for layer in info.layers],
    }
    if labels is None:
        metrics["accuracy_note"] = "not measured: the inputs have no labels"
    if warning:
        metrics["tflm_vs_tflite_warning"] = warning
    return VerifyResult(metrics=metrics, tflm_outputs=outs)


def outputs_identical(a: bytes, b: bytes, inputs: np.ndarray, arena_bytes: int) -> bool:
    """True when host TFLM gives byte-identical outputs for two flatbuffers (proof for ``slim``)."""
    oa, _ = run_tflm(a, inputs, arena_bytes)
    ob, _ = run_tflm(b, inputs, arena_bytes)
    return bool(np.array_equal(oa, ob))
