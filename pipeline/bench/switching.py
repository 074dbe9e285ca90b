"""Quantization switching benchmark (`make bench` runs it; `python -m pipeline.bench.switching`).

Three firmwares on the emulated Pico, each holding several variants of one model:

- **CNN 2/4/8-bit**: MicroPizzaNet, the runs of the shipped ``codebook-2bit``, ``int4`` and ``int8``
  recipes (``picotflm run`` first: stages that are up to date are skipped), each variant stored as
  its recipe stores it (2-bit codebooks, 4-bit weights, 8-bit weights); its size / accuracy / latency
  table of the three.
- **CNN**: MicroPizzaNet's ``int4`` and ``int8`` runs.
- **synthetic**: the seed benchmark's MLP (Dense 64-32-6 on 32-feature Gaussian blobs, features
  min-max scaled into [0, 1] as 8-bit values), trained in float, then 4-bit and 8-bit
  quantization-aware training from the same weights with the same seed and batches (so both variants
  quantize the input alike, which one firmware needs).

Per variant: .tflite and weight bytes, model and weight bytes as stored on the device, switch cost, arena used, median invoke latency and cycles,
golden and test-frame bit-exactness, accuracy. For the policy: the board's decisions on the frames it
is sent (compared with the host simulation) and the threshold sweep over the whole test split with
the board's latencies and switch costs. Writes ``switchbench.md`` and ``switchbench.csv``.
"""
from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pipeline.errors import PipelineError

THRESHOLDS = (0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def mlp_variants(samples: int = 1200, epochs: int = 20, qat_epochs: int = 4, seed: int = 0,
                 log: Callable[[str], None] = _log) -> dict[str, Any]:
    """The synthetic MLP as (name, .tflite) int4 and int8 variants, with its test inputs and labels."""
    from pipeline.config import ConvertConfig, QuantizeConfig
    from pipeline.stages.convert import convert
    from pipeline.tflite.reader import inspect_tflite
    from pipeline.stages.optimize.common import evaluate_accuracy, fine_tune
    from pipeline.stages.optimize.quantize import quantize
    from pipeline.bench.seeds import mlp, synthetic_mlp_data
    from pipeline.stages.verify import quantize_input

    (xtr, ytr), (xva, yva), (xte, yte) = synthetic_mlp_data(samples, seed=seed)
    lo, hi = np.percentile(xtr, 1), np.percentile(xtr, 99)

    def to_unit(x):  # 8-bit values in [0, 1], as a sensor would deliver them; 0 and 1 occur in every batch
        return (np.clip(np.round((x - lo) / (hi - lo) * 255), 0, 255) / 255.0).astype(np.float32)

    train, val, test = (to_unit(xtr), ytr), (to_unit(xva), yva), (to_unit(xte), yte)
    base = mlp(seed=seed)
    fine_tune(base, train, val, epochs=epochs, learning_rate=5e-3, seed=seed)
    log(f"switchbench: synthetic MLP trained, Keras test accuracy {evaluate_accuracy(base, test):.4f}")
    models = []
    for bits in (4, 8):
        q, _, _ = quantize(base, train, val, QuantizeConfig(method="qat", weight_bits=bits, epochs=qat_epochs,
                                                         learning_rate=1e-3), seed=seed)
        models.append((f"mlp-int{bits}", convert(q, train[0], ConvertConfig(), qat=True)))
    infos = [inspect_tflite(t) for _, t in models]
    same_input = all((i.input.scale, i.input.zero_point) == (infos[0].input.scale, infos[0].input.zero_point)
                     for i in infos)
    return {"models": models, "inputs": quantize_input(test[0], infos[0]), "labels": test[1],
            "class_names": [f"blob{k}" for k in range(6)], "same_input_quantization": same_input,
            "input_quantization": [(i.input.scale[0], i.input.zero_point[0]) for i in infos]}


def cnn_variants(runs_dir: Path, log: Callable[[str], None] = _log,
                 recipes: tuple[str, ...] = ("int4", "int8")) -> dict[str, Any]:
    """MicroPizzaNet's runs of ``recipes`` (brought up to date first) as switching variants, smallest
    on the device first, each with its device storage."""
    from pipeline.analysis.switch import check_same_model, load_variant, order_by_size
    from pipeline.tflite.reader import inspect_tflite
    from pipeline.stages.verify import images_to_input

    for r in recipes:  # stages that are up to date are skipped: cheap when the runs exist
        log(f"switchbench: picotflm run {r} ...")
        res = subprocess.run([sys.executable, "-m", "pipeline", "run", r, "--runs-dir", str(runs_dir),
                              "--no-progress"], capture_output=True, text=True)
        if res.returncode != 0:
            raise PipelineError(f"recipe {r} failed: {res.stderr.strip().splitlines()[-1:]}",
                                hint=f"run `picotflm run {r}` and read its error")
    vs = order_by_size([load_variant(r, runs_dir, need_latency=False) for r in recipes])
    check_same_model(vs)
    return {"models": [(v.name, v.tflite) for v in vs], "index_bits": [v.index_bits for v in vs],
            "inputs": images_to_input(vs[0].x_test, inspect_tflite(vs[0].tflite)), "labels": vs[0].y_test,
            "class_names": list(vs[0].class_names), "same_input_quantization": True}


def run_one(label: str, spec: dict[str, Any], out: Path, frames: int, threshold: float,
            log: Callable[[str], None] = _log) -> dict[str, Any]:
    from pipeline.analysis.switchfw import build_switching_models, measure_switching_models

    if not spec["same_input_quantization"]:
        raise PipelineError(f"{label}: the variants quantize the input differently ({spec['input_quantization']})",
                            hint="one firmware can switch only between variants that read the same input bytes")
    t0 = time.perf_counter()
    bits = spec.get("index_bits")
    built = build_switching_models(spec["models"], spec["inputs"], spec["labels"], spec["class_names"], out,
                                   golden_count=8, log=log, index_bits=bits)
    r = measure_switching_models(out, spec["models"], spec["inputs"], spec["labels"], threshold=threshold,
                                 frames=min(frames, len(spec["labels"])), sweep_thresholds=THRESHOLDS, log=log,
                                 index_bits=bits)
    r["build"] = built
    r["seconds"] = round(time.perf_counter() - t0, 1)
    return r


THREE = "MicroPizzaNet 2/4/8-bit"


def size_accuracy_latency(label: str, r: dict[str, Any]) -> list[str]:
    """The table of one firmware's variants: their size on the device, accuracy and latency, and the policy."""
    p, b, info = r["policy_on_board"], r["build"], r.get("board_info") or {}
    cores = info.get("cores")
    lines = [f"### {label}: size, accuracy and latency of the variants", "",
             f"One firmware ({b['flash_bytes']:,} B flash) holds every variant, each stored as its recipe stores "
             f"it, smallest in flash first; measured on {r['where']}"
             + (f"; the firmware ran on {cores} cores" if cores else "") + f". Board accuracy: the first {p['frames']} test frames; "
             f"host accuracy: host TFLM on all {r['test_samples']} test images.", "",
             "| variant | stored as | model in flash B | weights on the device B | host TFLM accuracy | "
             "board accuracy (frames) | median invoke on the board (us) | switch to it (us) | golden |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for v in r["variants_smallest_first"]:
        lines.append(f"| {v['run']} | {v['stored_as']} | {v['device_model_bytes']:,} | {v['device_weight_bytes']:,} | "
                     f"{v['test_accuracy_host']:.4f} | {v['frames_accuracy']:.4f} ({v['frames']}) | {v['median_us']:,} | "
                     f"{v['switch_us_median']:,.0f} | {v['golden_exact']} |")
    shares = ", ".join(f"{v['run']} {f:.1%}" for v, f in zip(r["variants_smallest_first"], p["per_level_fraction"]))
    lines += ["", f"Policy on the board ({p['metric']} < {p['threshold']:g}, {p['frames']} frames, smallest first): "
              f"accuracy {p['accuracy']:.4f}, answered by {shares}; mean {p['mean_us']:,.0f} us per frame (switching "
              f"{p['mean_switch_us']:,.0f} us of it); decisions equal to the host simulation "
              f"{p['decisions_match_host']}/{p['frames']}, outputs bit-exact {p['outputs_bit_exact']}/{p['frames']}."]
    return lines


def markdown(results: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["# Quantization switching benchmark", "",
             "One firmware per model holds its variants (one arena); measured on the emulated Pico. Switch: the "
             "board's median `select` time (TFLM setup of that variant). Policy: the smallest variant first, the "
             "next when the top-1 confidence is below the threshold; an escalated frame pays the switches up and "
             "the one back.", ""]
    if THREE in results:
        lines += size_accuracy_latency(THREE, results[THREE]) + ["", "### Every firmware", ""]
    lines += ["| model | variant | stored as | device model B | device weight B | .tflite B | switch (us) | "
              "arena used B | median invoke (us) | cycles | golden | frames bit-exact | frames accuracy | "
              "test accuracy (host) |",
              "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    for label, r in results.items():
        for v in r["variants_smallest_first"]:
            lines.append(f"| {label} | {v['run']} | {v['stored_as']} | {v['device_model_bytes']:,} | "
                         f"{v['device_weight_bytes']:,} | {v['tflite_bytes']:,} | "
                         f"{v['switch_us_median']:,.0f} | {v['arena_used']:,} | {v['median_us']:,} | "
                         f"{v['median_cycles']:,} | {v['golden_exact']} | {v['frames_bit_exact']}/{v['frames']} | "
                         f"{v['frames_accuracy']:.4f} | {v['test_accuracy_host']:.4f} |")
    lines += ["", "| model | firmware flash B | static RAM B | policy on the board | frames | accuracy | escalated | "
              "mean us/frame | decisions = host |", "|---|---:|---:|---|---:|---:|---:|---:|---:|"]
    for label, r in results.items():
        p, b = r["policy_on_board"], r["build"]
        lines.append(f"| {label} | {b['flash_bytes']:,} | {b['static_ram_bytes']:,} | {p['metric']} < {p['threshold']:g} | "
                     f"{p['frames']} | {p['accuracy']:.4f} | {p['escalated_fraction']:.1%} | {p['mean_us']:,.0f} | "
                     f"{p['decisions_match_host']}/{p['frames']} |")
    for label, r in results.items():
        lines += ["", f"Threshold sweep, {label} ({r['test_samples']} test inputs, host decisions, board latencies "
                  "and switch costs):", "",
                  "| threshold | accuracy | escalated | mean latency (us) | with switches (us) |",
                  "|---:|---:|---:|---:|---:|"]
        for row in r["rows"]:
            lines.append(f"| {row['threshold']:.2f} | {row['accuracy']:.4f} | {row['escalated_fraction']:.1%} | "
                         f"{row['mean_latency_us']:,.0f} | {row['mean_latency_us_with_switch_cost']:,.0f} |")
    return lines


def csv_rows(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for label, r in results.items():
        for v in r["variants_smallest_first"]:
            rows.append({"model": label, "what": v["run"], "threshold": "", "tflite_bytes": v["tflite_bytes"],
                         "weight_bytes": v["weight_bytes"], "device_model_bytes": v["device_model_bytes"],
                         "device_weight_bytes": v["device_weight_bytes"], "switch_us": v["switch_us_median"],
                         "arena_used": v["arena_used"], "median_us": v["median_us"],
                         "median_cycles": v["median_cycles"], "accuracy": v["test_accuracy_host"],
                         "escalated_fraction": "", "mean_latency_us_with_switches": v["median_us"]})
        for row in r["rows"]:
            rows.append({"model": label, "what": "policy (sweep)", "threshold": row["threshold"], "tflite_bytes": "",
                         "weight_bytes": "", "device_model_bytes": "", "device_weight_bytes": "", "switch_us": "", "arena_used": "", "median_us": "", "median_cycles": "",
                         "accuracy": row["accuracy"], "escalated_fraction": row["escalated_fraction"],
                         "mean_latency_us_with_switches": row["mean_latency_us_with_switch_cost"]})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.bench --only switching", description=__doc__.splitlines()[0])
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--frames", type=int, default=60, help="test frames per variant and for the policy")
    p.add_argument("--threshold", type=float, default=0.5, help="the board's policy threshold")
    p.add_argument("--only", choices=("cnn3", "cnn", "synthetic"), default=None,
                   help="one part: cnn3 (MicroPizzaNet 2/4/8-bit), cnn (int4/int8), synthetic (the MLP)")
    args = p.parse_args(argv)
    runs_dir = Path(args.runs_dir)
    out = runs_dir / "bench"
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results = {}
    try:
        if args.only in (None, "cnn3"):
            results[THREE] = run_one(THREE, cnn_variants(runs_dir, recipes=("codebook-2bit", "int4", "int8")),
                                     out / "switch-cnn3", args.frames, args.threshold)
        if args.only in (None, "cnn"):
            results["MicroPizzaNet"] = run_one("MicroPizzaNet", cnn_variants(runs_dir), out / "switch-cnn",
                                               args.frames, args.threshold)
        if args.only in (None, "synthetic"):
            results["synthetic MLP"] = run_one("synthetic MLP", mlp_variants(), out / "switch-mlp",
                                               args.frames, args.threshold)
    except PipelineError as e:
        print(f"switchbench: error: {e}", file=sys.stderr)
        return 2
    md = markdown(results) + ["", f"Total: {time.perf_counter() - t0:.1f} s."]
    (out / "switchbench.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    rows = csv_rows(results)
    with open(out / "switchbench.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print("\n".join(md))
    print(f"switchbench: {out / 'switchbench.md'}, {out / 'switchbench.csv'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
