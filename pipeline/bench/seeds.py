"""Seed benchmark: boundary pruning's tau swept over a synthetic MLP and MicroPizzaNet.

``python -m pipeline.bench.seeds`` (``make seedbench``). For each model, each tau and each seed, one
trial: the project's boundary pruning (:func:`pipeline.stages.optimize.prune.prune`, ``method="boundary"``:
``|w| < tau * max|W|`` zeroed per layer, mask kept through a short fine-tune), then

* wall time of the trial (prune + fine-tune, and for the CNN conversion and host TFLM too),
* peak resident memory of the process during the trial (Linux ``VmHWM`` after resetting it through
  ``/proc/self/clear_refs``; elsewhere the process's lifetime high-water mark from ``getrusage``),
* parameter ratio: non-zero / total over every weight of the model, and over the pruned kernels,
* accuracy: the MLP by Keras (float) on its synthetic test split; MicroPizzaNet by host TFLM on the
  int8 ``.tflite`` of the pruned model, on the test split of the trained run it starts from.

The MLP is trained per seed from scratch (so the seed changes its initial weights and the fine-tune);
the CNN starts from one trained float model (``runs/int8/model.keras``), so its seed changes only the
fine-tune's shuffling. Mean and spread (sample standard deviation, min, max) per model and tau go to
``seedbench.csv`` (every trial), ``seedbench_summary.csv`` and ``seedbench.md`` in ``runs/seedbench``.
"""
from __future__ import annotations

import argparse
import csv
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from pipeline.errors import PipelineError

TAUS = (0.1, 0.15, 0.2, 0.25, 0.3)
FIELDS = ("model", "tau", "seed", "seconds", "peak_rss_mb", "param_ratio", "kernel_ratio", "accuracy",
          "accuracy_where")
SUMMARY_METRICS = ("seconds", "peak_rss_mb", "param_ratio", "kernel_ratio", "accuracy")


@dataclass(frozen=True)
class SeedBenchConfig:
    taus: tuple[float, ...] = TAUS
    seeds: int = 3
    models: tuple[str, ...] = ("mlp", "cnn")
    mlp_train_epochs: int = 20  # the MLP's training before pruning
    mlp_samples: int = 1200  # synthetic MLP samples (train 60 %, val 20 %, test 20 %)
    fine_tune_epochs: int = 2  # boundary pruning's fine-tune (the shipped boundary-int8 recipe uses 4)
    representative_samples: int = 100  # CNN int8 calibration images
    cnn_run: str = "int8"  # the trained run the CNN trials start from

    def __post_init__(self) -> None:
        if not self.taus:
            raise ValueError("seedbench: taus is empty; give at least one tau in (0, 1)")
        for t in self.taus:
            if not 0.0 <= t < 1.0:
                raise ValueError(f"seedbench: tau = {t!r} is outside [0, 1)")
        for name in ("seeds", "mlp_train_epochs", "mlp_samples", "fine_tune_epochs", "representative_samples"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"seedbench: {name} = {v!r} must be an integer of at least 1")
        if self.mlp_samples < 30:
            raise ValueError(f"seedbench: mlp_samples = {self.mlp_samples} must be at least 30")
        for m in self.models:
            if m not in ("mlp", "cnn"):
                raise ValueError(f"seedbench: model {m!r} is not one of mlp, cnn")


# ------------------------------------------------------------------------------------ memory
class PeakMemory:
    """Peak RSS of this process over a block: VmHWM after a reset (Linux), else getrusage's max."""

    def __enter__(self) -> "PeakMemory":
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS (Linux 4.0+)
            self.how = "VmHWM reset per trial"
        except OSError:
            self.how = "ru_maxrss (process lifetime peak)"
        self.mb = 0.0
        return self

    def __exit__(self, *exc) -> None:
        hwm = None
        if self.how.startswith("VmHWM"):
            try:
                for line in open("/proc/self/status"):
                    if line.startswith("VmHWM:"):
                        hwm = int(line.split()[1]) / 1024.0
            except OSError:
                pass
        if hwm is None:
            ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            hwm = ru / (1024.0 * 1024.0) if sys.platform == "darwin" else ru / 1024.0
        self.mb = hwm


# ------------------------------------------------------------------------------------- models
def synthetic_mlp_data(samples: int, classes: int = 6, features: int = 32, seed: int = 0):
    """Gaussian blobs, overlapping enough that accuracy is below 1: (train, val, test) of float32/int."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 1.0, (classes, features))
    y = rng.integers(0, classes, samples)
    x = (centers[y] + rng.normal(0, 1.6, (samples, features))).astype(np.float32)
    a, b = int(samples * 0.6), int(samples * 0.8)
    return (x[:a], y[:a]), (x[a:b], y[a:b]), (x[b:], y[b:])


def mlp(features: int = 32, classes: int = 6, seed: int = 0):
    """The synthetic MLP: Dense 64 - Dense 32 - Dense softmax (4,518 parameters at 32 features)."""
    from pipeline.keras_setup import keras, seed_everything

    k = keras()
    seed_everything(seed)
    L = k.layers
    i = L.Input((features,))
    x = L.Dense(64, activation="relu")(i)
    x = L.Dense(32, activation="relu")(x)
    return k.Model(i, L.Dense(classes, activation="softmax")(x))


def param_ratios(model) -> tuple[float, float]:
    """(non-zero / total over all weights, non-zero / total over the conv/dense kernels)."""
    from pipeline.stages.optimize.common import KERNEL_LAYERS, kernel_of

    ws = [np.asarray(w) for w in model.get_weights()]
    total = sum(w.size for w in ws)
    nz = sum(int(np.count_nonzero(w)) for w in ws)
    ks = [np.asarray(kernel_of(l).numpy()) for l in model.layers
          if type(l).__name__ in KERNEL_LAYERS and kernel_of(l) is not None]
    kt = sum(k.size for k in ks)
    knz = sum(int(np.count_nonzero(k)) for k in ks)
    return nz / total, (knz / kt if kt else 1.0)


# ------------------------------------------------------------------------------------- trials
def mlp_trials(cfg: SeedBenchConfig, log: Callable[[str], None]) -> list[dict[str, Any]]:
    from pipeline.config import PruneConfig
    from pipeline.stages.optimize.common import evaluate_accuracy, fine_tune
    from pipeline.stages.optimize.prune import prune

    train, val, test = synthetic_mlp_data(cfg.mlp_samples)
    rows = []
    for seed in range(cfg.seeds):
        base = mlp(seed=seed)
        fine_tune(base, train, val, epochs=cfg.mlp_train_epochs, learning_rate=5e-3, seed=seed)
        base_acc = evaluate_accuracy(base, test)
        log(f"seedbench: mlp seed {seed}: trained, Keras test accuracy {base_acc:.4f} before pruning")
        for tau in cfg.taus:
            with PeakMemory() as mem:
                t0 = time.perf_counter()
                pruned, _ = prune(base, train, val, PruneConfig(method="boundary", tau=tau, epochs=cfg.fine_tune_epochs),
                                  seed=seed)
                acc = evaluate_accuracy(pruned, test)
                seconds = time.perf_counter() - t0
            ratio, kratio = param_ratios(pruned)
            rows.append({"model": "mlp", "tau": tau, "seed": seed, "seconds": seconds, "peak_rss_mb": mem.mb,
                         "param_ratio": ratio, "kernel_ratio": kratio, "accuracy": acc,
                         "accuracy_where": "Keras float, synthetic test split", "unpruned_accuracy": base_acc})
            log(f"seedbench: mlp tau {tau:g} seed {seed}: {seconds:.1f} s, accuracy {acc:.4f}, ratio {ratio:.3f}")
    return rows


def cnn_trials(cfg: SeedBenchConfig, runs_dir: Path, log: Callable[[str], None]) -> list[dict[str, Any]]:
    from pipeline.config import ConvertConfig, PruneConfig
    from pipeline.stages.convert import convert
    from pipeline.tflite.reader import inspect_tflite
    from pipeline.stages.data import Dataset, to_model_input
    from pipeline.keras_setup import keras
    from pipeline.stages.optimize.prune import prune
    from pipeline.stages.verify import images_to_input, run_tflm

    run = runs_dir / cfg.cnn_run
    if not (run / "model.keras").is_file() or not (run / "data.npz").is_file():
        raise PipelineError(f"run {run} has no trained model.keras and data.npz",
                            hint=f"run `picotflm train {cfg.cnn_run}` first")
    ds = Dataset.load(run / "data.npz")
    base = keras().models.load_model(str(run / "model.keras"), compile=False)
    train = (to_model_input(ds.x_train), ds.y_train)
    val = (to_model_input(ds.x_val), ds.y_val)
    rows = []
    for seed in range(cfg.seeds):
        for tau in cfg.taus:
            with PeakMemory() as mem:
                t0 = time.perf_counter()
                pruned, _ = prune(base, train, val, PruneConfig(method="boundary", tau=tau, epochs=cfg.fine_tune_epochs),
                                  seed=seed)
                data = convert(pruned, train[0], ConvertConfig(representative_samples=cfg.representative_samples))
                info = inspect_tflite(data)
                outs, _ = run_tflm(data, images_to_input(ds.x_test, info), 1 << 20)
                acc = float(np.mean(outs.argmax(1) == ds.y_test.astype(int)))
                seconds = time.perf_counter() - t0
            ratio, kratio = param_ratios(pruned)
            rows.append({"model": "cnn", "tau": tau, "seed": seed, "seconds": seconds, "peak_rss_mb": mem.mb,
                         "param_ratio": ratio, "kernel_ratio": kratio, "accuracy": acc,
                         "accuracy_where": "host TFLM, int8 .tflite, test split"})
            log(f"seedbench: cnn tau {tau:g} seed {seed}: {seconds:.1f} s, accuracy {acc:.4f}, ratio {ratio:.3f}")
    return rows


# -------------------------------------------------------------------------------- aggregation
def aggregate(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (model, tau), in first-seen order: n, and mean / std (sample, 0 for one run) / min / max of
    each of :data:`SUMMARY_METRICS`."""
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["model"], float(r["tau"])), []).append(r)
    out = []
    for (model, tau), rs in groups.items():
        s: dict[str, Any] = {"model": model, "tau": tau, "n": len(rs)}
        for m in SUMMARY_METRICS:
            v = np.asarray([float(r[m]) for r in rs])
            s[f"{m}_mean"] = float(v.mean())
            s[f"{m}_std"] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
            s[f"{m}_min"] = float(v.min())
            s[f"{m}_max"] = float(v.max())
        out.append(s)
    return out


def markdown(summary: Sequence[dict[str, Any]], cfg: SeedBenchConfig, total_seconds: float, memory_how: str) -> list[str]:
    lines = ["# Seed benchmark: boundary pruning tau sweep", "",
             f"{cfg.seeds} seeds per tau; fine-tune {cfg.fine_tune_epochs} epoch(s) after pruning. Mean +- sample "
             f"standard deviation [min, max]. Peak memory: process RSS ({memory_how}). Total {total_seconds:.1f} s.",
             "Accuracy: MLP by Keras (float) on its synthetic test split; CNN (MicroPizzaNet) by host TFLM on the "
             "int8 model. Parameter ratio: non-zero / total over all weights; kernels: over the pruned kernels.", "",
             "| model | tau | n | seconds | peak RSS (MB) | params non-zero | kernels non-zero | accuracy |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in summary:
        def cell(m, fmt):
            return (f"{format(s[m + '_mean'], fmt)} +- {format(s[m + '_std'], fmt)} "
                    f"[{format(s[m + '_min'], fmt)}, {format(s[m + '_max'], fmt)}]")
        lines.append(f"| {s['model']} | {s['tau']:g} | {s['n']} | {cell('seconds', '.1f')} | "
                     f"{s['peak_rss_mb_mean']:.0f} +- {s['peak_rss_mb_std']:.0f} | {cell('param_ratio', '.3f')} | "
                     f"{cell('kernel_ratio', '.3f')} | {cell('accuracy', '.4f')} |")
    return lines


def _write_csv(path: Path, rows: Sequence[dict[str, Any]], fields: Sequence[str]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def run_bench(cfg: SeedBenchConfig, runs_dir: str | Path = "runs", out_dir: str | Path = "runs/seedbench",
              log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Every trial, the summary, and the files written."""
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    if "mlp" in cfg.models:
        rows += mlp_trials(cfg, log)
    if "cnn" in cfg.models:
        rows += cnn_trials(cfg, Path(runs_dir), log)
    total = time.perf_counter() - t0
    summary = aggregate(rows)
    with PeakMemory() as probe:
        pass
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "seedbench.csv", rows, FIELDS)
    sfields = ["model", "tau", "n"] + [f"{m}_{a}" for m in SUMMARY_METRICS for a in ("mean", "std", "min", "max")]
    _write_csv(out / "seedbench_summary.csv", summary, sfields)
    md = markdown(summary, cfg, total, probe.how)
    (out / "seedbench.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    return {"rows": rows, "summary": summary, "markdown": md, "seconds": total,
            "files": [str(out / "seedbench.csv"), str(out / "seedbench_summary.csv"), str(out / "seedbench.md")]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipeline.bench --only seeds", description=__doc__.splitlines()[0])
    p.add_argument("--taus", default=",".join(f"{t:g}" for t in TAUS), help="comma-separated taus (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=3, help="runs per tau, seeds 0..N-1 (default 3)")
    p.add_argument("--models", default="mlp,cnn", help="mlp, cnn or both (default: mlp,cnn)")
    p.add_argument("--epochs", type=int, default=2, help="fine-tune epochs after pruning (default 2; the boundary-int8 recipe uses 4)")
    p.add_argument("--runs-dir", default="runs", help="where the trained CNN run is (default: runs)")
    p.add_argument("--cnn-run", default="int8", help="trained run the CNN trials start from (default: int8)")
    p.add_argument("--out", default="runs/seedbench", help="output folder (default: runs/seedbench)")
    args = p.parse_args(argv)
    try:
        cfg = SeedBenchConfig(taus=tuple(float(t) for t in args.taus.split(",") if t.strip()), seeds=args.seeds,
                              models=tuple(m.strip() for m in args.models.split(",") if m.strip()),
                              fine_tune_epochs=args.epochs, cnn_run=args.cnn_run)
    except ValueError as e:
        print(f"picotflm: error: {e} (hint: see `python -m pipeline.bench --help`)", file=sys.stderr)
        return 2
    try:
        r = run_bench(cfg, args.runs_dir, args.out, log=lambda m: print(m, file=sys.stderr, flush=True))
    except PipelineError as e:
        print(f"picotflm: error: {e}", file=sys.stderr)
        return 2
    print("\n".join(r["markdown"]))
    print(f"seedbench: {len(r['rows'])} trials in {r['seconds']:.1f} s; {', '.join(r['files'])}")
    return 0
