"""Quantization switching inside one firmware, measured on the board (or the emulated Pico).

``build_switching`` renders several runs of one model (e.g. ``int4`` and ``int8``) into one firmware:
every model in flash, each stored as its run's recipe stores it (a ``cluster.index_bits`` of 2 or 4:
its clustered CONV_2D filters as codebooks; else the .tflite's own int8 or int4 bytes), one tensor
arena sized for the largest, variant 0 (the smallest in flash) set up at boot.
``measure_switching`` then asks the board, per variant: what a switch to it costs (``select``: TFLM's
setup of that model in the arena), arena used, median invoke latency, golden bit-exactness, and its
answers to test frames; and for the policy (``policy`` + ``auto``: variant 0 first, the next variant
while the top-1 score is below the threshold): each frame's answer, escalations and cycles including
the switches. The board's policy decisions are compared one by one with the host simulation of the
same policy on the same frames (pipeline/analysis/switch.py), and the threshold sweep over the whole test
split uses the latencies and switch costs the board measured.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from pipeline.errors import PipelineError
from pipeline.flow.recipe import RECIPES_DIR
from pipeline.analysis.switch import (
    DEFAULT_THRESHOLDS,
    HOST_ARENA_BYTES,
    METRICS,
    SwitchConfig,
    check_same_model,
    load_variant,
    order_by_size,
    policy,
    sweep,
)

SELECT_SAMPLES = 3  # switches per variant for its median switch cost


def _dequantize(raw: np.ndarray, info) -> np.ndarray:
    if info.output.dtype in ("INT8", "UINT8", "INT16"):
        return (raw.astype(np.float64) - info.output.zero_point[0]) * info.output.scale[0]
    return raw.astype(np.float64)


SPEC_DIR = RECIPES_DIR / "switch"
SPEC_KEYS = {"variants", "threshold", "metric", "frames", "name"}


def load_switch_spec(items: Sequence[str], *, threshold: float | None = None, metric: str | None = None,
                     frames: int | None = None, name: str | None = None) -> dict[str, Any]:
    """What to switch between: run names, or one spec file with a ``[switch]`` table (``variants``,
    ``threshold``, ``metric``, ``frames``, ``name``). Arguments given here override the spec's."""
    import math
    import re

    spec: dict[str, Any] = {}
    items = [str(i) for i in items]
    if len(items) == 1:
        path = Path(items[0])
        if not path.is_file() and (SPEC_DIR / f"{items[0]}.toml").is_file():
            path = SPEC_DIR / f"{items[0]}.toml"
        if not path.is_file():
            raise PipelineError(f"switching needs two or more runs, or a switch spec; {items[0]!r} is neither",
                                hint="e.g. `picotflm switch int4 int8`, or `picotflm switch int4-int8` "
                                     f"(specs in {SPEC_DIR.relative_to(RECIPES_DIR.parent.parent)})")
        import tomllib

        try:
            table = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise PipelineError(f"switch spec {path} is not valid TOML: {e}", hint="fix the file") from None
        spec = table.get("switch")
        if not isinstance(spec, dict) or set(table) != {"switch"}:
            raise PipelineError(f"switch spec {path} must hold exactly one [switch] table",
                                hint="[switch] with variants = [\"int4\", \"int8\"] and optional threshold, "
                                     "metric, frames, name")
        unknown = set(spec) - SPEC_KEYS
        if unknown:
            raise PipelineError(f"switch spec {path}: unknown key(s) {', '.join(sorted(unknown))}",
                                hint=f"known keys: {', '.join(sorted(SPEC_KEYS))}")
        variants = spec.get("variants")
        if not isinstance(variants, list) or not all(isinstance(v, str) and v for v in variants):
            raise PipelineError(f"switch spec {path}: variants must be a list of run names",
                                hint='e.g. variants = ["int4", "int8"]')
        spec.setdefault("name", f"switch-{path.stem}")
    else:
        variants = items
    out = {
        "variants": list(variants),
        "threshold": threshold if threshold is not None else spec.get("threshold", 0.5),
        "metric": metric or spec.get("metric", "confidence"),
        "frames": frames if frames is not None else spec.get("frames", 40),
        "name": name or spec.get("name") or "switch-" + "-".join(Path(v).name for v in variants),
    }
    if len(out["variants"]) < 2:
        raise PipelineError(f"switching needs at least two variants, got {len(out['variants'])}",
                            hint="name two or more runs of the same model, e.g. `picotflm switch int4 int8`")
    t = out["threshold"]
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or not 0.0 <= t <= 1.0:
        raise PipelineError(f"switch threshold {t!r} is outside [0, 1]",
                            hint="thresholds are confidences or margins of a softmax: give a value in [0, 1]")
    if out["metric"] not in METRICS:
        raise PipelineError(f"switch metric must be one of {', '.join(METRICS)}, not {out['metric']!r}",
                            hint="use confidence or margin")
    f = out["frames"]
    if isinstance(f, bool) or not isinstance(f, int) or not 1 <= f <= 360:
        raise PipelineError(f"switch frames {f!r} is not a whole number from 1 to 360",
                            hint="frames are test images sent to the board per variant and for the policy")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", str(out["name"])):
        raise PipelineError(f"switch name {out['name']!r} cannot be a folder name",
                            hint="use letters, digits, '.', '_' and '-' (at most 64), e.g. --name switch-int4-int8")
    return out


def device_storage(models: Sequence[tuple[str, bytes]], index_bits: Sequence[int] | None) -> list[int]:
    """Each model's device storage as a codebook index width (8: the .tflite's own int8 or int4 bytes);
    PipelineError for a width the firmware cannot decode."""
    from pipeline.tflite.codebook import INDEX_BITS

    bits = [8] * len(models) if index_bits is None else [int(b) for b in index_bits]
    if len(bits) != len(models):
        raise PipelineError(f"{len(bits)} storage widths for {len(models)} variants", hint="this is a bug in the caller")
    for (name, _), b in zip(models, bits):
        if b != 8 and b not in INDEX_BITS:
            raise PipelineError(f"variant {name}: codebook index width {b} bits is not supported",
                                hint=f"cluster.index_bits must be one of {', '.join(map(str, INDEX_BITS))} (or 8)")
    return bits


def stored_as(bits: int) -> str:
    return "its .tflite" if bits == 8 else f"{bits}-bit codebooks"


def device_bytes(tflite: bytes, bits: int) -> dict[str, Any]:
    """A variant's bytes as the switching firmware stores them (the render stage's figures)."""
    from pipeline.flow.steps import device_stored

    d = device_stored(tflite, bits)
    return {"stored_as": stored_as(bits), "index_bits": bits, "device_model_bytes": int(d["device_model_bytes"]),
            "device_weight_bytes": int(d["device_weight_bytes"])}


def build_switching(runs: Sequence[str | Path], out_dir: str | Path, *, runs_dir: str | Path = "runs",
                    image: str = "board", kernels: str = "picotflm", golden_count: int = 8,
                    log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Render and build one firmware holding every run of ``runs`` (smallest first); returns what
    was built: the variants, the arena, the ELF's flash and static RAM."""
    from pipeline.config import BuildConfig
    from pipeline.tflite.reader import inspect_tflite
    from pipeline.stages.verify import images_to_input

    BuildConfig(image=image, kernels=kernels)  # refuses a bad image / kernels name
    variants = [load_variant(r, runs_dir, need_latency=False) for r in runs]
    check_same_model(variants)
    variants = order_by_size(variants)
    out = Path(out_dir)
    if out.resolve() in {Path(v.root).resolve() for v in variants}:
        raise PipelineError(f"the switching firmware's folder {out} is one of the variants' runs",
                            hint="give the switching firmware its own --name")
    x_all = images_to_input(variants[0].x_test, inspect_tflite(variants[0].tflite))
    return build_switching_models([(v.name, v.tflite) for v in variants], x_all, variants[0].y_test,
                                  list(variants[0].class_names), out, image=image, kernels=kernels,
                                  golden_count=golden_count, log=log, index_bits=[v.index_bits for v in variants])


def build_switching_models(models: Sequence[tuple[str, bytes]], inputs: np.ndarray, labels: np.ndarray,
                           class_names: Sequence[str], out_dir: str | Path, *, image: str = "board",
                           kernels: str = "picotflm", golden_count: int = 8,
                           log: Callable[[str], None] = lambda m: None,
                           index_bits: Sequence[int] | None = None) -> dict[str, Any]:
    """``build_switching`` for models given as ``(name, .tflite)`` pairs, smallest first, with their
    test inputs (model input tensor values) and labels. ``index_bits``: each model's device storage
    (2 or 4: its clustered CONV_2D filters as codebooks; 8, the default: as the .tflite holds it)."""
    from pipeline import __version__
    from pipeline.flow.rundir import atomic_write_bytes, atomic_write_json, library_versions
    from pipeline.stages.build import build_firmware, find_toolchain
    from pipeline.config import BuildConfig, RenderConfig
    from pipeline.tflite.reader import inspect_tflite
    from pipeline.codegen.render import RenderVariant, choose_arena, render_variants
    from pipeline.stages.data import golden_indices
    from pipeline.stages.build import GENERATED_COPY, build_dir_for, locked, sync_tree
    from pipeline.stages.verify import minimal_arena, run_tflm

    out = Path(out_dir)
    bits = device_storage(models, index_bits)
    idx = golden_indices(np.asarray(labels), golden_count)
    rv, host_arena, infos = [], 0, []
    for name, tflite in models:
        info = inspect_tflite(tflite)
        infos.append(info)
        need = minimal_arena(tflite, info)
        host_arena = max(host_arena, need)
        y, _ = run_tflm(tflite, inputs[idx], HOST_ARENA_BYTES)
        rv.append(RenderVariant(name, tflite, y))
        log(f"switch: variant {name}: {len(tflite):,} B .tflite, stored as {stored_as(bits[len(infos) - 1])}, "
            f"host arena minimum {need:,} B")
    cfg = RenderConfig(golden_count=golden_count)
    versions = library_versions()
    gen = out / "firmware"
    render_variants(rv, cfg, gen, golden_inputs=inputs[idx],
                    golden_labels=[int(labels[i]) for i in idx], class_names=list(class_names),
                    host_arena_bytes=host_arena,
                    provenance={"tool_version": __version__,
                                "model_file": " + ".join(f"{name}/model.tflite" for name, _ in models),
                                "source_sha256": "see each variant's run", "tensorflow": versions.get("tensorflow") or "unknown",
                                "tflite_micro": versions.get("tflite-micro") or "unknown"},
                    codebook_bits=bits)
    arena = choose_arena(cfg, host_arena)
    tc = find_toolchain()
    bcfg = BuildConfig(image=image, kernels=kernels)
    build_dir = build_dir_for(out.resolve().parent, image)
    if kernels != "picotflm":
        build_dir = build_dir.with_name(build_dir.name + f"-{kernels}")
    t0 = time.perf_counter()
    with locked(build_dir.with_name(build_dir.name + ".lock")):
        sync_tree(gen, build_dir / GENERATED_COPY)
        res = build_firmware(build_dir / GENERATED_COPY, build_dir, bcfg, toolchain=tc, log=log)
        for src, name in ((res.elf, "firmware.elf"), (res.bin, "firmware.bin"), (res.uf2, "firmware.uf2")):
            atomic_write_bytes(out / name, Path(src).read_bytes())
    mem = res.memory
    built = {
        "variants_smallest_first": [
            {"index": i, "run": name, "tflite_bytes": len(tflite), "weight_bytes": int(infos[i].weight_bytes),
             "hash": hashlib.sha256(tflite).hexdigest()[:16], "macs": int(infos[i].macs),
             **device_bytes(tflite, bits[i])}
            for i, (name, tflite) in enumerate(models)],
        "arena_bytes": arena.bytes,
        "arena_rule": arena.explanation + " (largest host minimum of the variants)",
        "image": image,
        "kernels": kernels,
        "flash_bytes": mem.get("flash_bytes"),
        "static_ram_bytes": mem.get("static_ram_bytes"),
        "golden_count": len(idx),
        "build_seconds": round(time.perf_counter() - t0, 1),
        "where": "read from the ELF (pyelftools)",
    }
    atomic_write_json(out / "switch_build.json", built)
    return built


def measure_switching(out_dir: str | Path, runs: Sequence[str | Path], *, runs_dir: str | Path = "runs",
                      port: str | None = None, image: str = "board", threshold: float = 0.5,
                      metric: str = "confidence", frames: int = 40, bench_runs: int = 5,
                      sweep_thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
                      log: Callable[[str], None] = lambda m: None, where: str | None = None) -> dict[str, Any]:
    """Measure the switching firmware in ``out_dir`` (built by ``build_switching``) on the board;
    write switch.json / switch.md / switch.png there and return the result."""
    from pipeline.tflite.reader import inspect_tflite
    from pipeline.stages.verify import images_to_input

    variants = order_by_size([load_variant(r, runs_dir, need_latency=False) for r in runs])
    check_same_model(variants)
    x_all = images_to_input(variants[0].x_test, inspect_tflite(variants[0].tflite))
    return measure_switching_models(out_dir, [(v.name, v.tflite) for v in variants], x_all, variants[0].y_test,
                                    port=port, image=image, threshold=threshold, metric=metric, frames=frames,
                                    bench_runs=bench_runs, sweep_thresholds=sweep_thresholds, log=log, where=where,
                                    index_bits=[v.index_bits for v in variants])


def measure_switching_models(out_dir: str | Path, models: Sequence[tuple[str, bytes]], inputs: np.ndarray,
                             labels: np.ndarray, *, port: str | None = None, image: str = "board",
                             threshold: float = 0.5, metric: str = "confidence", frames: int = 40,
                             bench_runs: int = 5, sweep_thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
                             log: Callable[[str], None] = lambda m: None, where: str | None = None,
                             index_bits: Sequence[int] | None = None) -> dict[str, Any]:
    """``measure_switching`` for models given as ``(name, .tflite)`` pairs, smallest first, with their
    test inputs (model input tensor values) and labels; ``index_bits`` as ``build_switching_models``."""
    from pipeline.flow.rundir import atomic_write_json, atomic_write_text
    from pipeline.tflite.reader import inspect_tflite
    from pipeline.board.client import BoardClient
    from pipeline.board.connect import BoardUnavailable, board_port
    from pipeline.stages.verify import run_tflm

    SwitchConfig(thresholds=(float(threshold),), metric=metric)  # refuses a bad threshold or metric
    if not 1 <= int(frames) <= len(labels):
        raise PipelineError(f"frames {frames} is outside 1..{len(labels)}",
                            hint="give --frames between 1 and the test split size")
    out = Path(out_dir)
    elf = out / "firmware.elf"
    if not elf.is_file():
        raise PipelineError(f"{out} has no firmware.elf", hint="build the switching firmware first (`picotflm switch`)")
    infos = [inspect_tflite(t) for _, t in models]
    bits = device_storage(models, index_bits)
    hashes = [hashlib.sha256(t).hexdigest()[:16] for _, t in models]
    x_all = inputs
    labels = np.asarray(labels).astype(int)
    n = min(int(frames), len(labels))
    frame_bytes = [bytes(r.tobytes()) for r in x_all[:n]]
    host_raw = [run_tflm(t, x_all, HOST_ARENA_BYTES)[0] for _, t in models]
    host_probs = [_dequantize(r, info) for r, info in zip(host_raw, infos)]
    permille = int(round(float(threshold) * 1000))
    t_used = permille / 1000.0  # what the board compares with

    t0 = time.perf_counter()
    per_variant: list[dict[str, Any]] = []
    device_policy: dict[str, Any] = {}
    try:
        with board_port(elf, port, image, where) as (port_name, where):
            with BoardClient(port_name, timeout=30.0) as b:
                info = b.handshake(expect_hash=None if port else hashes[0])
                listed = b.variants()
                if [v.get("hash") for v in listed] != hashes:
                    raise PipelineError(
                        f"the board's variants {[v.get('name') for v in listed]} ({[v.get('hash') for v in listed]}) "
                        f"are not these runs' models {hashes}",
                        hint="flash this switching firmware (firmware.uf2 in the switch folder)")
                for i, (vname, tflite) in enumerate(models):
                    log(f"switch: variant {i} ({vname}): switch cost, bench, golden, {n} frames ...")
                    costs = [b.select(i) for _ in range(SELECT_SAMPLES)]
                    mem = b.request("mem")
                    bench = b.request("bench", int(bench_runs), timeout=120.0)
                    golden = b.request("golden", timeout=120.0)
                    outs = [b.send_frame(f, timeout=30.0) for f in frame_bytes]
                    dev = np.stack([np.frombuffer(o["output"], dtype=host_raw[i].dtype) for o in outs])
                    host = host_raw[i][:n].reshape(n, -1)
                    per_variant.append({
                        "index": i, "run": vname, "tflite_bytes": len(tflite), "weight_bytes": int(infos[i].weight_bytes),
                        **device_bytes(tflite, bits[i]), "board_model_bytes": int(listed[i].get("model_bytes", 0)),
                        "switch_cycles_median": int(np.median([c["switch_cycles"] for c in costs])),
                        "switch_us_median": float(np.median([c["switch_us"] for c in costs])),
                    # the first switch to a variant computes its requantization; later ones reuse it
                    "switch_us_first": int(costs[0]["switch_us"]),
                        "arena_used": int(mem["arena_used"]), "ram_total": int(mem["ram_total"]),
                        "median_us": int(bench["median_us"]), "median_cycles": int(bench["median_cycles"]),
                        "cycles_per_mac": round(int(bench["median_cycles"]) / max(1, int(infos[i].macs)), 2),
                        "golden_exact": f"{golden['exact']}/{golden['count']}",
                        "frames": n,
                        "frames_bit_exact": int(sum(np.array_equal(d, h) for d, h in zip(dev, host))),
                        "frames_accuracy": float(np.mean(dev.argmax(1) == labels[:n])),
                        "test_accuracy_host": float(np.mean(host_probs[i].argmax(1) == labels)),
                    })
                log(f"switch: policy ({metric} < {t_used:g}) on {n} frames ...")
                b.set_policy(t_used, metric)
                b.select(0)
                autos = [b.send_frame(f, timeout=60.0, auto=True) for f in frame_bytes]
    except BoardUnavailable as e:  # no emulated Pico here and no --port
        raise PipelineError(e.message, hint="install the emulated Pico (make install) or give --port") from None

    # The host simulation of the same policy on the same frames must decide exactly as the board did.
    pred, level = policy([p[:n] for p in host_probs], t_used, metric)
    dev_level = np.array([a["variant"] for a in autos])
    dev_pred = np.array([a["top1"] for a in autos])
    dev_out_exact = sum(a["output"] == bytes(host_raw[a["variant"]][k].tobytes()) for k, a in enumerate(autos))
    device_policy = {
        "metric": metric, "threshold": t_used, "frames": n,
        "accuracy": float(np.mean(dev_pred == labels[:n])),
        "escalated_fraction": float(np.mean(dev_level > 0)),
        "per_level_fraction": [float(np.mean(dev_level == k)) for k in range(len(models))],
        "mean_cycles": float(np.mean([a["cycles"] for a in autos])),
        "mean_us": float(np.mean([a["us"] for a in autos])),
        "median_us": float(np.median([a["us"] for a in autos])),
        "mean_switch_us": float(np.mean([a["switch_us"] for a in autos])),
        "mean_invoke_cycles": float(np.mean([a["invoke_cycles"] for a in autos])),
        "decisions_match_host": int(np.sum(dev_level == level)),
        "predictions_match_host": int(np.sum(dev_pred == pred)),
        "outputs_bit_exact": int(dev_out_exact),
    }
    # The sweep over the whole test split: host decisions, board latencies and switch costs.
    lat = [pv["median_us"] for pv in per_variant]
    sw = [pv["switch_us_median"] for pv in per_variant]
    rows = sweep(host_probs, labels, lat, SwitchConfig(thresholds=tuple(sweep_thresholds), metric=metric),
                 switch_costs_us=sw)
    result = {
        "variants_smallest_first": per_variant,
        "policy_on_board": device_policy,
        "where": where,
        "metric": metric,
        "score": "top-1 dequantized softmax output" if metric == "confidence"
                 else "top-1 minus top-2 dequantized softmax output",
        "switch_model": "an answer at level k ran variants 0..k: k switches up, and one back to variant 0 "
                        "before the next frame; each switch costs the board's median `select` time of its "
                        "target variant",
        "test_samples": int(len(labels)),
        "rows": rows,
        "measure_seconds": round(time.perf_counter() - t0, 1),
        "board_info": {k: info.get(k) for k in ("image", "kernels", "cores", "clock_hz", "arena_size", "variants")},
    }
    built = out / "switch_build.json"
    if built.is_file():
        import json

        result["build"] = json.loads(built.read_text(encoding="utf-8"))
    atomic_write_json(out / "switch.json", result)
    atomic_write_text(out / "switch.md", "\n".join(markdown(result)) + "\n")
    plot(result, out / "switch.png")
    result["files"] = [str(out / "switch.json"), str(out / "switch.md"), str(out / "switch.png")]
    return result


def markdown(r: dict[str, Any]) -> list[str]:
    vs = r["variants_smallest_first"]
    p = r["policy_on_board"]
    b = r.get("build") or {}
    lines = [f"# Quantization switching in one firmware: {' -> '.join(v['run'] for v in vs)}", "",
             f"Measured on: {r['where']}. One firmware holds every variant"
             + (f" ({b['flash_bytes']:,} B flash, {b['static_ram_bytes']:,} B static RAM, one arena of "
                f"{b['arena_bytes']:,} B)" if b.get("flash_bytes") else "") + "; variant 0 is set up at boot.", "",
             "| variant | stored as | device model B | device weight B | switch to it (us; first) | arena used B | "
             "median invoke (us) | cycles/MAC | golden | frames bit-exact | frames accuracy | test accuracy (host) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    for v in vs:
        lines.append(f"| {v['run']} | {v.get('stored_as', 'its .tflite')} | {v.get('device_model_bytes', v['tflite_bytes']):,} | "
                     f"{v.get('device_weight_bytes', v['weight_bytes']):,} | {v['switch_us_median']:,.0f}; "
                     f"{v['switch_us_first']:,} | "
                     f"{v['arena_used']:,} | {v['median_us']:,} | {v['cycles_per_mac']:.2f} | {v['golden_exact']} | "
                     f"{v['frames_bit_exact']}/{v['frames']} | {v['frames_accuracy']:.4f} | {v['test_accuracy_host']:.4f} |")
    lines += ["", f"Policy on the board ({p['metric']} < {p['threshold']:g}, {p['frames']} test frames): accuracy "
              f"{p['accuracy']:.4f}, escalated {p['escalated_fraction']:.1%}, mean {p['mean_us']:,.0f} us per frame "
              f"(of which switching {p['mean_switch_us']:,.0f} us), median {p['median_us']:,.0f} us. Decisions equal "
              f"to the host simulation: {p['decisions_match_host']}/{p['frames']}; outputs bit-exact with host TFLM: "
              f"{p['outputs_bit_exact']}/{p['frames']}.", "",
              f"Threshold sweep over the {r['test_samples']} test images (host TFLM decisions; the board's median "
              f"latencies and switch costs; {r['switch_model']}):", "",
              f"| {r['metric']} threshold | accuracy | escalated | mean latency (us) | with switch cost (us) |",
              "|---:|---:|---:|---:|---:|"]
    for row in r["rows"]:
        lines.append(f"| {row['threshold']:.2f} | {row['accuracy']:.4f} | {row['escalated_fraction']:.1%} | "
                     f"{row['mean_latency_us']:,.0f} | {row['mean_latency_us_with_switch_cost']:,.0f} |")
    return lines


def plot(r: dict[str, Any], path: Path) -> Path:
    from pipeline.analysis.switch import plot_curve

    points = [(v["median_us"], v["test_accuracy_host"], marker, f"{v['run']} alone")
              for v, marker in zip(r["variants_smallest_first"], "sD^v")]
    p = r["policy_on_board"]
    points.append((p["mean_us"], p["accuracy"], "*", f"on the board: {p['threshold']:g}, {p['frames']} frames"))
    return plot_curve(path, r["rows"], "mean_latency_us_with_switch_cost",
                      f"policy, {r['metric']} threshold (test split)", points,
                      "mean latency per image (ms, board-measured, switches included)", "accuracy",
                      "Quantization switching in one firmware")


__all__ = ["build_switching", "build_switching_models", "device_bytes", "device_storage", "load_switch_spec",
           "measure_switching", "measure_switching_models", "stored_as"]
