"""On-the-fly quantization switching, simulated on the host with real TFLM.

Variants are runs of the same model at different bit widths (e.g. ``int4`` and ``int8``). The policy
runs the smallest variant first and re-runs the input with the next larger variant when its answer is
not sure enough: the top-1 confidence (dequantized softmax output) or the margin between the top two
below a threshold in [0, 1]. Accuracy comes from host TFLM on the test split (the same kernels the
firmware runs, reference versions); latency from each variant's figure measured on the board
(``measured.json``: median microseconds per invoke, from the emulated Pico unless a real board was
measured). The switch cost is not counted unless stated (``switch_cost_us``); ``picotflm switch``
(pipeline/analysis/switchfw.py) measures it on the board with the firmware that really switches.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from pipeline.errors import PipelineError

METRICS = ("confidence", "margin")
DEFAULT_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(21))  # 0.00, 0.05, ..., 1.00
HOST_ARENA_BYTES = 1 << 20  # outputs do not depend on the arena size; large enough for any variant


@dataclass(frozen=True)
class SwitchConfig:
    """The policy: which score decides (``metric``), the thresholds to sweep, a stated switch cost."""

    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    metric: str = "confidence"
    switch_cost_us: float = 0.0  # per escalation; 0 = unknown, not counted

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise PipelineError(f"switch metric must be one of {', '.join(METRICS)}, not {self.metric!r}",
                                hint="use --metric confidence or --metric margin")
        if not self.thresholds:
            raise PipelineError("no thresholds to simulate", hint="give thresholds in [0, 1], e.g. --thresholds 0.5,0.8")
        for t in self.thresholds:
            if not isinstance(t, (int, float)) or isinstance(t, bool) or not math.isfinite(t) or not 0.0 <= t <= 1.0:
                raise PipelineError(f"switch threshold {t!r} is outside [0, 1]",
                                    hint="thresholds are confidences or margins of a softmax: give values in [0, 1]")
        if not math.isfinite(self.switch_cost_us) or self.switch_cost_us < 0:
            raise PipelineError(f"switch cost {self.switch_cost_us!r} us is not a non-negative number",
                                hint="give --switch-cost-us 0 (unknown) or a measured figure")


def parse_thresholds(items: Sequence[str]) -> tuple[float, ...]:
    """``["0.5,0.6", "0.9"]`` -> ``(0.5, 0.6, 0.9)``; PipelineError for anything that is not a number."""
    out = []
    for item in items:
        for part in str(item).split(","):
            if not part.strip():
                continue
            try:
                out.append(float(part))
            except ValueError:
                raise PipelineError(f"threshold {part.strip()!r} is not a number",
                                    hint="give thresholds in [0, 1], e.g. --thresholds 0.5,0.8,0.95") from None
    return tuple(out)


# ------------------------------------------------------------------------------------ variants
@dataclass
class Variant:
    """One run: its flatbuffer, shapes, class names, test split and measured board latency."""

    name: str
    tflite: bytes
    input_shape: list[int]
    output_shape: list[int]
    class_names: tuple[str, ...]
    weight_bytes: int
    latency_us: float
    latency_where: str
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    root: Path | None = None
    index_bits: int = 8  # codebook index width of its device storage (cluster.index_bits); 8: as the .tflite
    device_weight_bytes: int = 0  # its weights as stored on the device (codebooks encoded); 0: not known
    device_model_bytes: int = 0  # its model in the device's flash (flow/steps.py device_stored); 0: not known


def stored_bits(root: Path) -> int:
    """The codebook index width a run's recorded recipe gives its device storage (8 for none, or when
    the run recorded no recipe)."""
    from pipeline.flow.recipe import recipe_of_run
    from pipeline.flow.steps import codebook_bits

    path = Path(root) / "manifest.json"
    if not path.is_file():
        return 8
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise PipelineError(f"run {Path(root).name}: manifest.json is not valid JSON ({e})",
                            hint=f"run `picotflm run {Path(root).name}` again") from None
    if not manifest.get("recipe"):
        return 8
    return codebook_bits(recipe_of_run(manifest))


def _stored(v: Variant) -> Variant:
    from pipeline.flow.steps import device_stored

    v.index_bits = stored_bits(v.root) if v.root is not None else 8
    d = device_stored(v.tflite, v.index_bits)
    v.device_weight_bytes, v.device_model_bytes = int(d["device_weight_bytes"]), int(d["device_model_bytes"])
    return v


def load_variant(run: str | Path, runs_dir: str | Path = "runs", *, need_latency: bool = True) -> Variant:
    """A run directory (or a name in ``runs_dir``) as a variant; PipelineError when a part is missing.
    ``need_latency=False``: a run not measured yet is fine (latency 0, where "not measured")."""
    from pipeline.tflite.reader import inspect_tflite
    from pipeline.stages.data import Dataset

    root = Path(run)
    if not root.is_dir():
        root = Path(runs_dir) / str(run)
    if not root.is_dir():
        raise PipelineError(f"run {run} does not exist (looked in {root})", hint="run `picotflm run RECIPE` first")
    for name, how in (("model.tflite", f"picotflm run {root.name}"), ("data.npz", f"picotflm run {root.name}"),
                      ("measured.json", f"picotflm measure {root.name}")):
        if name == "measured.json" and not need_latency:
            continue
        if not (root / name).is_file():
            raise PipelineError(f"run {root.name} has no {name}", hint=f"run `{how}` first")
    data = (root / "model.tflite").read_bytes()
    info = inspect_tflite(data)
    ds = Dataset.load(root / "data.npz")
    if not need_latency:
        return _stored(Variant(name=root.name, tflite=data, input_shape=list(info.input.shape),
                               output_shape=list(info.output.shape), class_names=tuple(ds.class_names),
                               weight_bytes=int(info.weight_bytes), latency_us=0.0, latency_where="not measured",
                               x_test=ds.x_test, y_test=ds.y_test, root=root))
    try:
        m = json.loads((root / "measured.json").read_text(encoding="utf-8"))
        latency = float(m["bench"]["median_us"])
    except (ValueError, KeyError, TypeError) as e:
        raise PipelineError(f"run {root.name}: measured.json has no median latency ({e})",
                            hint=f"run `picotflm measure {root.name}` again") from None
    where = str(m.get("source_label") or m.get("where") or m.get("source") or "board")
    return _stored(Variant(name=root.name, tflite=data, input_shape=list(info.input.shape),
                           output_shape=list(info.output.shape), class_names=tuple(ds.class_names),
                           weight_bytes=int(info.weight_bytes), latency_us=latency, latency_where=where,
                           x_test=ds.x_test, y_test=ds.y_test, root=root))


def check_same_model(variants: Sequence[Variant]) -> None:
    """Refuse variants that are not the same model on the same test split."""
    if len(variants) < 2:
        raise PipelineError(f"switching needs at least two variants, got {len(variants)}",
                            hint="name two or more runs of the same model, e.g. `picotflm switch-sim int4 int8`")
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise PipelineError(f"the same run is named twice ({', '.join(names)})", hint="name each variant once")
    a = variants[0]
    for b in variants[1:]:
        for what, x, y in (("input shape", a.input_shape, b.input_shape), ("output shape", a.output_shape, b.output_shape),
                           ("class names", list(a.class_names), list(b.class_names))):
            if x != y:
                raise PipelineError(f"runs {a.name} and {b.name} are not the same model: {what} {x} vs {y}",
                                    hint="switch only between variants of one model (same data, classes and shapes)")
        if a.x_test.shape != b.x_test.shape or not (np.array_equal(a.x_test, b.x_test) and np.array_equal(a.y_test, b.y_test)):
            raise PipelineError(f"runs {a.name} and {b.name} have different test splits",
                                hint="use runs made from the same data settings (data.seed, samples, image size)")


def order_by_size(variants: Sequence[Variant]) -> list[Variant]:
    """Smallest first: the model's bytes in the device's flash (codebooks encoded, the kernels' expanded
    weights included), then weight bytes, then .tflite bytes."""
    return sorted(variants, key=lambda v: (v.device_model_bytes, v.device_weight_bytes or v.weight_bytes,
                                           len(v.tflite)))


def dequantized_outputs(v: Variant, arena_bytes: int = HOST_ARENA_BYTES) -> np.ndarray:
    """Host TFLM softmax outputs of ``v`` on its test split, dequantized to floats [N, classes]."""
    from pipeline.tflite.reader import inspect_tflite
    from pipeline.stages.verify import images_to_input, run_tflm

    info = inspect_tflite(v.tflite)
    raw, _ = run_tflm(v.tflite, images_to_input(v.x_test, info), arena_bytes)
    if info.output.dtype in ("INT8", "UINT8", "INT16"):
        return (raw.astype(np.float64) - info.output.zero_point[0]) * info.output.scale[0]
    return raw.astype(np.float64)


# -------------------------------------------------------------------------------------- policy
def scores(probs: np.ndarray, metric: str) -> np.ndarray:
    """Per row: the top-1 probability (``confidence``) or top-1 minus top-2 (``margin``)."""
    if metric not in METRICS:
        raise PipelineError(f"switch metric must be one of {', '.join(METRICS)}, not {metric!r}",
                            hint="use --metric confidence or --metric margin")
    p = np.sort(np.asarray(probs, dtype=np.float64), axis=1)
    if metric == "confidence":
        return p[:, -1]
    return p[:, -1] - p[:, -2] if p.shape[1] > 1 else p[:, -1]


def policy(outputs: Sequence[np.ndarray], threshold: float, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """The switching policy over precomputed outputs (smallest variant first).

    Returns ``(prediction, level)``: per row the class predicted by the last variant run and the
    index of that variant (0 = the smallest answered, k = escalated k times). A row escalates while
    its score is below ``threshold`` and a larger variant is left.
    """
    if not 0.0 <= threshold <= 1.0:
        raise PipelineError(f"switch threshold {threshold!r} is outside [0, 1]", hint="give a value in [0, 1]")
    n = len(outputs[0])
    level = np.zeros(n, dtype=int)
    pred = np.asarray(outputs[0]).argmax(axis=1)
    active = scores(outputs[0], metric) < threshold
    for k in range(1, len(outputs)):
        level[active] = k
        pred = np.where(active, np.asarray(outputs[k]).argmax(axis=1), pred)
        active = active & (scores(outputs[k], metric) < threshold)
    return pred, level


def sweep(outputs: Sequence[np.ndarray], labels: np.ndarray, latencies_us: Sequence[float],
          cfg: SwitchConfig, switch_costs_us: Sequence[float] | None = None) -> list[dict[str, Any]]:
    """One row per threshold: accuracy, fraction escalated, mean latency without and with the switch cost.

    A row answered at level k ran variants 0..k: its latency is the sum of their latencies (+ k switches
    at ``cfg.switch_cost_us`` each). With ``switch_costs_us`` (what a switch *to* each variant costs,
    measured on the board) an escalated row pays the switches to variants 1..k and the one back to
    variant 0 that the next frame starts with, as the firmware's ``auto`` does.
    """
    labels = np.asarray(labels).astype(int)
    cum = np.cumsum(np.asarray(latencies_us, dtype=np.float64))
    if switch_costs_us is not None:
        c = np.asarray(switch_costs_us, dtype=np.float64)
        if len(c) != len(outputs):
            raise PipelineError(f"{len(c)} switch costs for {len(outputs)} variants", hint="this is a bug in the caller")
        up = np.concatenate([[0.0], np.cumsum(c[1:])])  # switches up to level k
        switch = np.where(np.arange(len(c)) > 0, up + c[0], 0.0)
    else:
        switch = np.arange(len(outputs)) * cfg.switch_cost_us
    rows = []
    for t in cfg.thresholds:
        pred, level = policy(outputs, float(t), cfg.metric)
        lat = cum[level]
        rows.append({
            "threshold": float(t),
            "accuracy": float(np.mean(pred == labels)),
            "escalated_fraction": float(np.mean(level > 0)),
            "per_level_fraction": [float(np.mean(level == k)) for k in range(len(outputs))],
            "mean_latency_us": float(lat.mean()),
            "mean_latency_us_with_switch_cost": float((lat + switch[level]).mean()),
        })
    return rows


# ------------------------------------------------------------------------------------ the study
def simulate(runs: Sequence[str | Path], cfg: SwitchConfig, runs_dir: str | Path = "runs",
             out_dir: str | Path = "runs/switch", log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Load the variants, check they are one model, run each on host TFLM, sweep the thresholds,
    write ``switch.json``, ``switch.md`` and ``switch.png`` into ``out_dir``; return the result."""
    t0 = time.perf_counter()
    variants = [load_variant(r, runs_dir) for r in runs]
    check_same_model(variants)
    variants = order_by_size(variants)
    labels = variants[0].y_test.astype(int)
    outputs = []
    alone = []
    for v in variants:
        log(f"switch-sim: host TFLM on {len(labels)} test images with {v.name} ...")
        probs = dequantized_outputs(v)
        outputs.append(probs)
        alone.append({"run": v.name, "weight_bytes": v.weight_bytes, "tflite_bytes": len(v.tflite),
                      "device_model_bytes": v.device_model_bytes, "device_weight_bytes": v.device_weight_bytes,
                      "accuracy": float(np.mean(probs.argmax(1) == labels)), "latency_us": v.latency_us,
                      "latency_where": v.latency_where})
    setup_s = _host_setup_seconds(variants[-1])
    rows = sweep(outputs, labels, [v.latency_us for v in variants], cfg)
    result = {
        "variants_smallest_first": alone,
        "metric": cfg.metric,
        "score": "top-1 dequantized softmax output" if cfg.metric == "confidence"
                 else "top-1 minus top-2 dequantized softmax output",
        "test_samples": int(len(labels)),
        "accuracy_where": "host TFLM (tflite-micro Python interpreter, 64-bit), test split",
        "latency_where": "; ".join(sorted({v.latency_where for v in variants})) + " (measured.json median per invoke)",
        "switch_cost_us": cfg.switch_cost_us,
        "switch_cost_note": ("not counted: give --switch-cost-us, or measure it on the board with `picotflm switch` "
                             "(mean_latency_us leaves it out)" if cfg.switch_cost_us == 0 else
                             f"stated, not measured on the device: {cfg.switch_cost_us:g} us per escalation"),
        "host_interpreter_setup_ms_largest": round(setup_s * 1e3, 3),
        "host_interpreter_setup_note": "host TFLM, 64-bit: how long making the larger variant's interpreter "
                                       "takes on the host; not a device figure and not added",
        "rows": rows,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from pipeline.flow.rundir import atomic_write_json

    atomic_write_json(out / "switch.json", result)
    (out / "switch.md").write_text("\n".join(markdown(result)) + "\n", encoding="utf-8")
    plot(result, out / "switch.png")
    result["files"] = [str(out / "switch.json"), str(out / "switch.md"), str(out / "switch.png")]
    return result


def _host_setup_seconds(v: Variant) -> float:
    from pipeline.stages.verify import make_interpreter

    t0 = time.perf_counter()
    make_interpreter(v.tflite, HOST_ARENA_BYTES)
    return time.perf_counter() - t0


def markdown(result: dict[str, Any]) -> list[str]:
    vs = result["variants_smallest_first"]
    lines = [f"# Quantization switching, simulated: {' -> '.join(v['run'] for v in vs)}", "",
             f"Accuracy: {result['accuracy_where']}, {result['test_samples']} images. Latency: "
             f"{result['latency_where']}. Score: {result['score']}; a row escalates when it is below the threshold.",
             f"Switch cost: {result['switch_cost_note']}.", "",
             "| variant | weight bytes | .tflite bytes | accuracy alone | latency (us) |", "|---|---:|---:|---:|---:|"]
    for v in vs:
        lines.append(f"| {v['run']} | {v['weight_bytes']:,} | {v['tflite_bytes']:,} | {v['accuracy']:.4f} | "
                     f"{v['latency_us']:,.0f} |")
    with_cost = result["switch_cost_us"] > 0
    lines += ["", f"| {result['metric']} threshold | accuracy | escalated | mean latency (us) |"
              + (" with switch cost (us) |" if with_cost else ""),
              "|---:|---:|---:|---:|" + ("---:|" if with_cost else "")]
    for r in result["rows"]:
        lines.append(f"| {r['threshold']:.2f} | {r['accuracy']:.4f} | {r['escalated_fraction']:.1%} | "
                     f"{r['mean_latency_us']:,.0f} |" + (f" {r['mean_latency_us_with_switch_cost']:,.0f} |" if with_cost else ""))
    return lines


def plot_curve(path: Path, rows: Sequence[dict[str, Any]], latency_key: str, curve_label: str,
               points: Sequence[tuple[float, float, str, str]], xlabel: str, ylabel: str, title: str) -> Path:
    """Accuracy against mean latency: the sweep's rows as one annotated curve (x: ``row[latency_key]``
    in us), and single ``points`` (latency us, accuracy, marker, label) such as each variant alone."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    x = [r[latency_key] / 1e3 for r in rows]
    y = [r["accuracy"] for r in rows]
    ax.plot(x, y, "o-", color="tab:blue", label=curve_label)
    for r, xi, yi in zip(rows, x, y):
        ax.annotate(f"{r['threshold']:.2f}", (xi, yi), textcoords="offset points", xytext=(3, 3), fontsize=7)
    for us, acc, marker, label in points:
        ax.plot([us / 1e3], [acc], marker, markersize=12 if marker == "*" else 8, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot(result: dict[str, Any], path: Path) -> Path:
    points = [(v["latency_us"], v["accuracy"], marker, f"{v['run']} alone")
              for v, marker in zip(result["variants_smallest_first"], "sD^v")]
    return plot_curve(path, result["rows"], "mean_latency_us", f"policy ({result['metric']} threshold)", points,
                      "mean latency per image (ms, measured board figures, no switch cost)",
                      "test accuracy (host TFLM)", "Quantization switching: accuracy vs mean latency")
