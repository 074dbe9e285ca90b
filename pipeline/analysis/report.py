"""``report.md`` and ``report.json`` of one run, read from its ``manifest.json``.

Generic on purpose: every stage's metrics dict is rendered as a table (nested dicts flattened to
``a.b`` keys, lists of records as their own tables, square matrices labelled with the class names
when the metrics carry ``class_names``), so a new stage's metrics appear without changing this file.
Stages that did not run say why.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pipeline.flow.rundir import RunDir, atomic_write_bytes, atomic_write_json, atomic_write_text, stage_metrics
from pipeline.analysis import feasibility
from pipeline.analysis.layers import LAYERS_SUMMARY_KEYS, REPORT_HEADING as LAYERS_HEADING, layers_markdown
from pipeline.analysis.published import published_line
from pipeline.board.targets import RP2040
from pipeline.codegen.layout import layout_markdown

STATUS_TEXT = {"done": "done", "up to date": "done (up to date)", "skipped": "skipped", "failed": "failed"}
MAX_LIST_ITEMS = 16
MAX_TABLE_ROWS = 60


def fmt(v: Any) -> str:
    """One value for a Markdown table cell."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        if v == int(v) and abs(v) >= 1000:
            return f"{int(v):,}"
        if 0 < abs(v) < 1e-3 or abs(v) >= 1e6:
            return f"{v:.3g}"
        return f"{v:.4f}".rstrip("0").rstrip(".") if abs(v) < 1 else f"{v:,.3f}".rstrip("0").rstrip(".")
    if isinstance(v, (list, tuple)):
        items = [fmt(x) for x in v[:MAX_LIST_ITEMS]]
        more = f", ... ({len(v)} in all)" if len(v) > MAX_LIST_ITEMS else ""
        return "[" + ", ".join(items) + more + "]"
    return str(v).replace("|", "\\|").replace("\n", " ")


def _is_matrix(v: Any) -> bool:
    return (isinstance(v, list) and len(v) > 1 and all(isinstance(r, list) and len(r) == len(v[0]) for r in v)
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for r in v for x in r))


def _is_records(v: Any) -> bool:
    return isinstance(v, list) and len(v) > 0 and all(isinstance(r, dict) for r in v)


def _is_dict_table(v: Any) -> bool:
    """``{"train": {"a": 1, "b": 2}, "val": {"a": 3, "b": 4}}``: rows of the same scalar columns."""
    if not isinstance(v, dict) or len(v) < 2 or not all(isinstance(r, dict) and r for r in v.values()):
        return False
    keys = [tuple(r) for r in v.values()]
    return all(k == keys[0] for k in keys) and all(
        not isinstance(x, (dict, list)) for r in v.values() for x in r.values())


def _flatten(d: dict[str, Any], prefix: str = "") -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """Scalars (dotted keys) and the 'big' values (matrices, record lists) that get their own tables."""
    flat, big = [], []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if _is_dict_table(v):
            big.append((key, v))
        elif isinstance(v, dict) and v:
            f2, b2 = _flatten(v, key + ".")
            flat += f2
            big += b2
        elif _is_matrix(v) or _is_records(v):
            big.append((key, v))
        else:
            flat.append((key, v))
    return flat, big


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows[:MAX_TABLE_ROWS]]
    if len(rows) > MAX_TABLE_ROWS:
        out.append(f"\n({len(rows) - MAX_TABLE_ROWS} more rows in report.json)")
    return out


def _matrix_table(name: str, m: list[list[Any]], labels: list[str] | None) -> list[str]:
    if labels and len(labels) == len(m) == len(m[0]):
        header = ["true \\ predicted"] + labels
        rows = [[f"**{labels[i]}**"] + [fmt(x) for x in r] for i, r in enumerate(m)]
    else:
        header = [""] + [str(j) for j in range(len(m[0]))]
        rows = [[str(i)] + [fmt(x) for x in r] for i, r in enumerate(m)]
    return [f"**{name}**", ""] + _table(header, rows)


def _records_table(name: str, recs: list[dict[str, Any]]) -> list[str]:
    cols: list[str] = []
    for r in recs:
        for k in r:
            if k not in cols:
                cols.append(k)
    rows = [[fmt(r.get(c)) for c in cols] for r in recs]
    return [f"**{name}**", ""] + _table(cols, rows)


def metrics_markdown(metrics: dict[str, Any]) -> list[str]:
    """A metrics dict as Markdown: one key/value table, then a table per matrix or record list."""
    labels = metrics.get("class_names") if isinstance(metrics.get("class_names"), list) else None
    flat, big = _flatten({k: v for k, v in metrics.items() if k != "class_names"})
    lines: list[str] = []
    if flat:
        lines += _table(["metric", "value"], [[f"`{k}`", fmt(v)] for k, v in flat])
    for key, value in big:
        lines.append("")
        if _is_matrix(value):
            lines += _matrix_table(key, value, labels)
        elif isinstance(value, dict):
            lines += _records_table(key, [{"": f"**{k}**", **r} for k, r in value.items()])
        else:
            lines += _records_table(key, value)
    return lines


def status_text(entry: dict[str, Any]) -> str:
    status = entry.get("status", "not run")
    text = STATUS_TEXT.get(status, status)
    if status in ("skipped", "failed") and entry.get("reason"):
        text += f": {entry['reason']}"
    return text


def build_report(manifest: dict[str, Any], *, layout: dict[str, Any] | None = None,
                 arena: dict[str, Any] | None = None, budget_png: str | None = None,
                 payload: dict[str, Any] | None = None,
                 layers: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """The Markdown text and the JSON document of a manifest (plus, when given, the arena layout and the
    flatbuffer-vs-payload figures (``convert.payload_bytes``) read from the run's ``.tflite``, the results
    of ``picotflm arena``, the layer-by-layer comparison of ``picotflm measure --layers`` and the name of
    the budget chart)."""
    recipe = manifest.get("recipe") or {}
    stages: dict[str, Any] = manifest.get("stages") or {}
    order = list(recipe.get("stages") or stages)
    order += [s for s in stages if s not in order]

    md = [f"# picotflm run `{manifest.get('run', '?')}`", ""]
    md.append(f"Recipe **{recipe.get('name', '?')}**" + (f": {recipe['description']}" if recipe.get("description") else ""))
    md += ["", f"Updated {manifest.get('updated', '?')}.", "", "## Stages", ""]
    rows = []
    for i, name in enumerate(order, 1):
        e = stages.get(name) or {}
        secs = e.get("seconds")
        rows.append([str(i), name, fmt(status_text(e)) if e else "not run", f"{secs:.1f} s" if secs is not None else "",
                     fmt(e.get("headline") or "")])
    md += _table(["#", "stage", "status", "time", "result"], rows)
    md += summary_markdown(manifest, payload)
    budget = memory_budget(manifest)
    md += ["", "## Memory budget", ""] + budget_markdown(budget)
    if budget_png:
        md += ["", f"![memory budget]({budget_png})"]
    if layout:
        md += ["", "## Tensor arena layout", ""]
        md += layout_markdown(layout, stage_metrics(manifest, "verify").get("host_arena_allocations"))
    if arena:
        md += ["", "## Arena tuning (`picotflm arena`)", ""] + arena_markdown(arena)
    if layers:
        md += ["", LAYERS_HEADING, ""] + layers_markdown(layers)
    feas = feasibility.run_table(manifest)  # the boards' budgets, as `picotflm feasibility RUN` prints them
    if feas:
        md += ["", "## Platform feasibility", ""] + feasibility.markdown(feas["rows"], feas["basis"])

    for name in order:
        e = stages.get(name) or {}
        md += ["", f"## {name}", ""]
        if not e:
            md.append("Not run (the run stopped before this stage).")
            continue
        if e.get("status") in ("skipped", "failed"):
            md.append(f"Not run: {status_text(e)}.")
            continue
        if e.get("headline"):
            md += [e["headline"], ""]
        md += metrics_markdown(e.get("metrics") or {}) or ["(no metrics)"]

    md += ["", "## Configs", ""]
    for name in order:
        cfg = (stages.get(name) or {}).get("config") or (recipe.get("configs") or {}).get(name)
        if cfg:
            md += [f"`[{name}]` " + ", ".join(f"{k} = {fmt(v)}" for k, v in cfg.items()), ""]

    versions = manifest.get("versions") or {}
    if versions:
        md += ["## Versions", ""]
        md += _table(["library", "version"], [[k, fmt(v)] for k, v in versions.items()])
    md.append("")

    doc = {
        "run": manifest.get("run"),
        "updated": manifest.get("updated"),
        "recipe": {k: recipe.get(k) for k in ("name", "description", "stages", "source")},
        "stages": [
            {"name": n, "status": (stages.get(n) or {}).get("status", "not run"),
             "reason": (stages.get(n) or {}).get("reason"), "seconds": (stages.get(n) or {}).get("seconds"),
             "headline": (stages.get(n) or {}).get("headline"), "metrics": (stages.get(n) or {}).get("metrics") or {}}
            for n in order
        ],
        "versions": versions,
        "summary": key_figures(manifest),
        "memory_budget": budget,
    }
    if payload:
        doc["flatbuffer_payload"] = payload
    if layout:
        doc["arena_layout"] = layout
    if arena:
        doc["arena_tuning"] = arena
    if layers:
        doc["layers"] = {k: layers.get(k) for k in LAYERS_SUMMARY_KEYS}
    if feas:
        doc["feasibility"] = feas
    return "\n".join(md), doc


def _json_or_none(path: Path) -> Any:
    """A JSON file written by a command of picotflm (arena.json, layers.json), or None (absent, unreadable)."""
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        return None


def write_report(run_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.md``, ``report.json`` and ``budget.png`` into ``run_dir`` from its manifest (and
    its ``model.tflite``, ``arena.json`` and ``layers.json`` when present); return the paths of the first two."""
    from pipeline.errors import PipelineError

    run_dir = Path(run_dir)
    run = RunDir(root=run_dir, name=run_dir.name)
    manifest = run.read_manifest()
    layout = payload = None
    tflite = run_dir / "model.tflite"
    if tflite.is_file():
        from pipeline.tflite.reader import payload_bytes
        from pipeline.codegen.layout import arena_layout

        model = tflite.read_bytes()
        try:
            layout = arena_layout(model)
        except PipelineError:
            layout = None  # a broken model file: the convert stage's status says why
        try:
            payload = payload_bytes(model)
        except PipelineError:
            payload = None
    arena, layers = (_json_or_none(run_dir / name) for name in ("arena.json", "layers.json"))
    png = budget_plot([(manifest.get("run") or run_dir.name, memory_budget(manifest))], run_dir / "budget.png")
    text, doc = build_report(manifest, layout=layout, arena=arena, budget_png=png.name if png else None,
                             payload=payload, layers=layers)
    md_path = atomic_write_text(run_dir / "report.md", text)
    json_path = atomic_write_json(run_dir / "report.json", doc)
    return md_path, json_path


# ------------------------------------------------------------------- key figures and comparison
def key_figures(manifest: dict[str, Any]) -> dict[str, Any]:
    """The figures a firmware engineer compares, each with where it was measured (None: not measured)."""
    train, ver = stage_metrics(manifest, "train"), stage_metrics(manifest, "verify")
    conv = stage_metrics(manifest, "convert") or stage_metrics(manifest, "tflite")  # a user's .tflite: no convert
    build, meas = stage_metrics(manifest, "build"), stage_metrics(manifest, "measure")
    render = stage_metrics(manifest, "render")
    last_keras = None
    for st in ("prune", "cluster", "quantize"):
        acc = stage_metrics(manifest, st).get("keras_val_accuracy")
        if acc is not None:
            last_keras = acc
    mem, bench, golden = meas.get("mem") or {}, meas.get("bench") or {}, meas.get("golden") or {}
    return {
        "run": manifest.get("run"),
        "recipe": (manifest.get("recipe") or {}).get("name"),
        "float_tflite_bytes": conv.get("float_tflite_bytes"),
        "tflite_bytes": conv.get("tflite_bytes"),
        "size_vs_float_percent": conv.get("size_vs_float_percent"),
        "weight_bytes": conv.get("weight_bytes"),
        "weight_dtypes": "/".join(conv.get("weight_dtypes") or []) or None,
        "keras_float_test_accuracy": train.get("test_accuracy"),
        "keras_compressed_val_accuracy": last_keras,
        "tflm_test_accuracy": ver.get("tflm_test_accuracy"),
        "host_arena_bytes": ver.get("host_arena_min_bytes"),
        "host_invoke_ms": ver.get("host_invoke_ms_median"),
        "flash_bytes": build.get("flash_bytes"),
        "static_ram_bytes": build.get("static_ram_bytes"),
        "device_model_bytes": render.get("device_model_bytes"),
        "device_weight_bytes": render.get("device_weight_bytes"),
        "expanded_weight_bytes": render.get("expanded_weight_bytes"),
        "codebook_ops": len(render["codebooks"]) if "codebooks" in render else None,
        "device_conv_cycles": sum(o.get("cycles") or 0 for o in (meas.get("profile") or {}).get("ops") or []
                                  if o.get("op") == "CONV_2D") or None,
        "measured_on": meas.get("where"),
        "device_arena_used_bytes": mem.get("arena_used"),
        "device_arena_size_bytes": mem.get("arena_size"),
        "device_stack_peak_bytes": mem.get("stack_peak"),
        "device_ram_total_bytes": meas.get("ram_total_bytes"),
        "device_median_us": bench.get("median_us"),
        "device_median_cycles": bench.get("median_cycles"),
        "device_one_core_median_us": (meas.get("bench_one_core") or {}).get("median_us"),
        "two_core_speedup": meas.get("two_core_speedup"),
        "published": published_line(conv.get("sha256"), (meas.get("bench_one_core") or {}).get("median_us"),
                                    bench.get("median_us") if meas.get("bench_one_core") else None),
        "cycles_per_mac": meas.get("cycles_per_mac"),
        "golden_exact": f"{golden.get('exact')}/{golden.get('count')}" if golden else None,
        "layers": ver.get("layers") or [],
    }


def summary_markdown(manifest: dict[str, Any], payload: dict[str, Any] | None = None) -> list[str]:
    k = key_figures(manifest)
    if k["tflite_bytes"] is None and k["keras_float_test_accuracy"] is None:
        return []
    na = "not measured"

    def v(x: Any, unit: str = "") -> str:
        return na if x is None else fmt(x) + unit

    rows = [
        ["model size, float .tflite", v(k["float_tflite_bytes"], " B"), "host (TFLiteConverter)"],
        [f"model size, {k['weight_dtypes'] or 'quantized'} .tflite", v(k["tflite_bytes"], " B")
         + (f" ({k['size_vs_float_percent']:+.1f} %)" if k["size_vs_float_percent"] is not None else ""),
         "host (the flashed model)"],
        ["weight bytes alone", v(k["weight_bytes"], " B"), "read from the flatbuffer"],
    ]
    if payload:
        from pipeline.tflite.reader import SLIM_GOAL_RATIO, payload_line

        rows.append(["flatbuffer vs payload (constants + scales + zero points)",
                     f"{payload_line(payload)} (goal <= {SLIM_GOAL_RATIO}x)", "read from the flatbuffer"])
    rows += [
        ["accuracy, Keras float (test split)", v(k["keras_float_test_accuracy"]), "host, tf_keras"],
        ["accuracy, Keras compressed (validation split)", v(k["keras_compressed_val_accuracy"]), "host, tf_keras"],
        ["accuracy, TFLM int (test split)", v(k["tflm_test_accuracy"]), "host TFLM (same kernels as the board)"],
        ["tensor arena, minimal", v(k["host_arena_bytes"], " B"), "host TFLM, 64-bit"],
        ["tensor arena, used", v(k["device_arena_used_bytes"], " B"), k["measured_on"] or na],
        ["tensor arena, compiled", v(k["device_arena_size_bytes"], " B"), "rendered config"],
        ["invoke time", v(k["host_invoke_ms"], " ms"), "host TFLM (x86, not the Pico)"],
        ["invoke time, median", v(k["device_median_us"], " us") + (f" ({fmt(k['device_median_cycles'])} cycles)"
                                                                   if k["device_median_cycles"] else ""),
         k["measured_on"] or na],
        *([["invoke time, median, one core (`cores 1`, same image)", v(k["device_one_core_median_us"], " us")
            + f" (two cores: {k['two_core_speedup']:.2f}x faster)", (k["measured_on"] or na)
            + ("; lockstep cores without bus contention: an upper bound for a Pico"
               if (k["measured_on"] or "").startswith("emulated") else "")]]
          if k["two_core_speedup"] else []),
        *([["published figures of this model", k["published"], "others, on a real Pico"]] if k["published"] else []),
        ["cycles per MAC", v(k["cycles_per_mac"]), k["measured_on"] or na],
        ["flash used of 2 MB", v(k["flash_bytes"], " B"), "ELF sections"],
        ["static RAM (.data + .bss incl. arena)", v(k["static_ram_bytes"], " B"), "ELF sections"],
        ["stack peak", v(k["device_stack_peak_bytes"], " B"), k["measured_on"] or na],
        ["RAM total (static + heap + stack peaks) of 264 KB", v(k["device_ram_total_bytes"], " B"),
         k["measured_on"] or na],
        ["golden outputs bit-exact vs host TFLM", v(k["golden_exact"]), k["measured_on"] or na],
    ]
    return ["", "## Key figures", "", "Each figure says where it was measured; \"not measured\" means this run did not "
            "measure it (see the stage's status).", ""] + _table(["figure", "value", "where"], rows)


def _load_manifest(run: str, runs_dir: str | Path) -> dict[str, Any]:
    rd = RunDir.existing(run, runs_dir)
    return rd.read_manifest()


COMPARE_COLUMNS = [
    ("recipe", "recipe"), ("weight_dtypes", "weights"), ("tflite_bytes", ".tflite B"),
    ("size_vs_float_percent", "vs float %"), ("weight_bytes", "weight B"),
    ("keras_float_test_accuracy", "Keras float acc"), ("tflm_test_accuracy", "TFLM acc"),
    ("host_arena_bytes", "host arena B"), ("device_arena_used_bytes", "board arena used B"),
    ("device_model_bytes", "model B on device"), ("device_weight_bytes", "weights B on device"),
    ("codebook_ops", "codebook ops"),
    ("device_median_us", "board median us"), ("device_median_cycles", "board cycles"),
    ("device_conv_cycles", "CONV_2D cycles"), ("cycles_per_mac", "cycles/MAC"), ("flash_bytes", "flash B"),
    ("device_ram_total_bytes", "RAM total B"), ("golden_exact", "golden exact"),
]


def write_comparison(runs: list[str], runs_dir: str | Path, out_dir: Path) -> tuple[Path, Path, list[Path]]:
    """compare.md / compare.json across runs, and PNG plots (size vs accuracy; per-layer weight bytes)."""
    manifests = [_load_manifest(r, runs_dir) for r in runs]
    figs = [key_figures(m) for m in manifests]
    budgets = [(f["run"], memory_budget(m)) for f, m in zip(figs, manifests)]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = ["# picotflm comparison", "", "Accuracy: test split (TFLM: host interpreter, the same kernels as the board). "
          "Board figures: " + ("; ".join(sorted({f['measured_on'] for f in figs if f['measured_on']})) or "none measured")
          + ". Empty cells: not measured in that run.", ""]
    md += _table(["run"] + [h for _, h in COMPARE_COLUMNS],
                 [[f["run"]] + ["" if f[k] is None else fmt(f[k]) for k, _ in COMPARE_COLUMNS] for f in figs])
    md += ["", "## Per-layer weights in the flatbuffer", ""]
    for f in figs:
        layers = [l for l in f["layers"] if l.get("weight_bytes")]
        if layers:
            md += [f"**{f['run']}**", ""]
            md += _table(["#", "op", "dtype", "bytes", "unique", "unique/channel", "sparsity"],
                         [[str(l["index"]), l["op"], l["weight_dtype"], fmt(l["weight_bytes"]), fmt(l["unique_values"]),
                           fmt(l.get("unique_per_channel_max")), f"{l['sparsity']:.1%}"] for l in layers])
            md.append("")
    md += ["## Memory budget (RP2040: 264 KB RAM, 2 MB flash)", ""] + compare_budget_markdown(budgets) + [""]
    pngs = _plots(figs, out_dir)
    budget_png = budget_plot(budgets, out_dir / "budget.png")
    if budget_png is not None:
        pngs.append(budget_png)
    md += [f"![{p.stem}]({p.name})" for p in pngs] + [""]
    md_path = atomic_write_text(out_dir / "compare.md", "\n".join(md))
    json_path = atomic_write_json(out_dir / "compare.json", {"runs": figs, "memory_budget": dict(budgets)})
    return md_path, json_path, pngs


def _save_png(fig, path: Path) -> Path:
    """A figure as PNG bytes (no timestamp metadata: same data, same bytes), written atomically."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def _plots(figs: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    pts = [f for f in figs if f["tflite_bytes"] and f["tflm_test_accuracy"] is not None]
    if pts:
        fig, ax = plt.subplots(figsize=(6, 4))
        for f in pts:
            ax.scatter(f["weight_bytes"], f["tflm_test_accuracy"], label=f"{f['run']} ({f['tflite_bytes']:,} B file)")
        ax.set_xlabel("weight bytes in the .tflite")
        ax.set_ylabel("TFLM test accuracy (host)")
        ax.set_title("Model weight bytes vs accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        out.append(_save_png(fig, out_dir / "size_vs_accuracy.png"))
    with_layers = [f for f in figs if any(l.get("weight_bytes") for l in f["layers"])]
    if with_layers:
        fig, ax = plt.subplots(figsize=(7, 4))
        width = 0.8 / len(with_layers)
        for i, f in enumerate(with_layers):
            layers = [l for l in f["layers"] if l.get("weight_bytes")]
            xs = [j + i * width for j in range(len(layers))]
            ax.bar(xs, [l["weight_bytes"] for l in layers], width=width, label=f["run"])
        ref = [l for l in with_layers[0]["layers"] if l.get("weight_bytes")]
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(ref))])
        ax.set_xticklabels([f"{l['index']}:{l['op'][:8]}" for l in ref], fontsize=7)
        ax.set_ylabel("weight bytes")
        ax.set_title("Per-layer weight bytes in the flatbuffer")
        ax.legend(fontsize=7)
        out.append(_save_png(fig, out_dir / "layer_bytes.png"))
    return out


# ------------------------------------------------------------------------------ memory budget
RAM_BUDGET = RP2040.ram_bytes
FLASH_BUDGET = RP2040.flash_bytes
NOT_MEASURED = "not measured"


def memory_budget(manifest: dict[str, Any]) -> dict[str, Any]:
    """RAM (static without the arena buffer, arena, stack peak, heap) against 264 KB and flash against
    2 MB, each part with where it was measured; ``None`` where this run did not measure it."""
    build, meas = stage_metrics(manifest, "build"), stage_metrics(manifest, "measure")
    mem = meas.get("mem") or {}
    where = meas.get("where") or ""
    where_board = "emulated Pico" if where.startswith("emulated") else ("Pico" if where else "board")
    static = arena = None
    static_where = arena_where = None
    # The board's own figures first (what it reports is what runs); the ELF where nothing was measured.
    if None not in (mem.get("data_bytes"), mem.get("bss_bytes"), mem.get("arena_size")):
        static = mem["data_bytes"] + mem["bss_bytes"] - mem["arena_size"]
        static_where = f"{where_board} (linker symbols)"
        arena, arena_where = mem["arena_size"], f"{where_board} (compiled size)"
    elif build.get("static_ram_bytes") is not None and build.get("arena_static_bytes") is not None:
        static, static_where = build["static_ram_bytes"] - build["arena_static_bytes"], "ELF sections minus the arena symbol"
        arena, arena_where = build["arena_static_bytes"], "ELF symbol size"
    parts = [
        {"part": "static RAM (.data + .bss without the arena buffer)", "bytes": static, "where": static_where},
        {"part": "tensor arena (compiled buffer)", "bytes": arena, "where": arena_where},
        {"part": "stack peak, core 0", "bytes": mem.get("stack_peak"),
         "where": f"{where_board} (painted stack)" if mem.get("stack_peak") is not None else None},
        core1_stack_part(mem, where_board),
        {"part": "heap", "bytes": mem.get("heap_used"),
         "where": f"{where_board} (sbrk)" if mem.get("heap_used") is not None else None},
    ]
    known = [p["bytes"] for p in parts]
    total = sum(known) if None not in known else None
    return {
        "ram_budget_bytes": RAM_BUDGET,
        "ram_parts": parts,
        "ram_total_bytes": total,
        "ram_free_bytes": RAM_BUDGET - total if total is not None else None,
        "arena_used_bytes": mem.get("arena_used"),
        "arena_used_where": where_board if mem.get("arena_used") is not None else None,
        "flash_budget_bytes": FLASH_BUDGET,
        "flash_bytes": build.get("flash_bytes"),
        "flash_where": "ELF sections" if build.get("flash_bytes") is not None else None,
        "image": build.get("image"),
    }


def core1_stack_part(mem: dict[str, Any], where_board: str) -> dict[str, Any]:
    """Core 1's stack: its painted peak where the firmware uses core 1; 0 B on an image that never
    starts core 1 (it reports no such figure); not measured without a board."""
    if mem.get("core1_stack_peak") is not None:
        return {"part": "stack peak, core 1", "bytes": mem["core1_stack_peak"], "where": f"{where_board} (painted stack)"}
    if mem.get("stack_peak") is not None:
        return {"part": "stack peak, core 1", "bytes": 0, "where": f"{where_board} (core 1 not started)"}
    return {"part": "stack peak, core 1", "bytes": None, "where": None}


def _pct(n: int | None, of: int) -> str:
    return "" if n is None else f"{100.0 * n / of:.1f} %"


def budget_markdown(b: dict[str, Any]) -> list[str]:
    """The budget as a table; a part this run did not measure says "not measured"."""
    rows = []
    for p in b["ram_parts"]:
        rows.append([p["part"], NOT_MEASURED if p["bytes"] is None else f"{p['bytes']:,} B",
                     _pct(p["bytes"], b["ram_budget_bytes"]), p["where"] or NOT_MEASURED])
    if b.get("arena_used_bytes") is not None:
        rows.append(["  of the arena: used (`arena_used_bytes()`)", f"{b['arena_used_bytes']:,} B",
                     _pct(b["arena_used_bytes"], b["ram_budget_bytes"]), b["arena_used_where"]])
    total = b["ram_total_bytes"]
    missing = [p["part"].split(" (")[0] for p in b["ram_parts"] if p["bytes"] is None]
    rows.append(["**RAM total** of 264 KB (270,336 B)",
                 f"**{total:,} B**" if total is not None else NOT_MEASURED
                 + (f" ({', '.join(missing)}: not measured)" if len(missing) < len(b["ram_parts"]) else ""),
                 _pct(total, b["ram_budget_bytes"]), "sum of the above" if total is not None else ""])
    rows.append(["RAM free", NOT_MEASURED if b["ram_free_bytes"] is None else f"{b['ram_free_bytes']:,} B",
                 _pct(b["ram_free_bytes"], b["ram_budget_bytes"]), ""])
    rows.append(["**flash used** of 2 MB (2,097,152 B)", NOT_MEASURED if b["flash_bytes"] is None
                 else f"**{b['flash_bytes']:,} B**", _pct(b["flash_bytes"], b["flash_budget_bytes"]),
                 b["flash_where"] or NOT_MEASURED])
    return _table(["part", "bytes", "of budget", "where"], rows)


BUDGET_COLORS = ("#4c72b0", "#dd8452", "#55a868", "#8172b3", "#c44e52")
BUDGET_LABELS = ("static RAM w/o arena", "tensor arena", "stack peak, core 0", "stack peak, core 1", "heap")


def budget_plot(budgets: list[tuple[str, dict[str, Any]]], path: Path) -> Path | None:
    """A bar chart per run: RAM parts stacked against 264 KB, flash against 2 MB (percent of each).
    Parts not measured are left out of the bar and named in its label. None when nothing was measured."""
    shown = [(n, b) for n, b in budgets if b["flash_bytes"] is not None or any(p["bytes"] for p in b["ram_parts"])]
    if not shown:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_ram, ax_flash) = plt.subplots(2, 1, figsize=(8, 1.6 + 1.0 * len(shown)), sharex=True,
                                           gridspec_kw={"height_ratios": [1.6, 1]})
    names = [n for n, _ in shown]
    ys = list(range(len(shown)))[::-1]
    for y, (name, b) in zip(ys, shown):
        left = 0.0
        for i, p in enumerate(b["ram_parts"]):
            if p["bytes"] is None:
                continue
            w = 100.0 * p["bytes"] / b["ram_budget_bytes"]
            ax_ram.barh(y, w, left=left, color=BUDGET_COLORS[i], label=BUDGET_LABELS[i] if y == ys[0] else None)
            left += w
        missing = [p["part"].split(" (")[0] for p in b["ram_parts"] if p["bytes"] is None]
        text = f"{b['ram_total_bytes']:,} B" if b["ram_total_bytes"] is not None else \
            f"{sum(p['bytes'] or 0 for p in b['ram_parts']):,} B + {', '.join(missing)} not measured"
        ax_ram.text(left + 1, y, text, va="center", fontsize=7)
        if b["flash_bytes"] is not None:
            w = 100.0 * b["flash_bytes"] / b["flash_budget_bytes"]
            ax_flash.barh(y, w, color="#8172b3")
            ax_flash.text(w + 1, y, f"{b['flash_bytes']:,} B", va="center", fontsize=7)
        else:
            ax_flash.text(1, y, "flash not measured", va="center", fontsize=7)
    for ax, title in ((ax_ram, "RAM, % of 264 KB"), (ax_flash, "flash, % of 2 MB")):
        ax.set_yticks(ys)
        ax.set_yticklabels(names, fontsize=8)
        ax.set_xlim(0, 100)
        ax.set_title(title, fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    ax_ram.legend(fontsize=7, loc="lower right")
    ax_flash.set_xlabel("% of the RP2040 budget")
    return _save_png(fig, Path(path))


def arena_markdown(a: dict[str, Any]) -> list[str]:
    """The results of ``picotflm arena`` (arena.json) as a table."""
    def b(key: str) -> str:
        v = a.get(key)
        return NOT_MEASURED if v is None else f"{v:,} B"

    peak, dmin = a.get("peak_live_activations_bytes"), a.get("device_min_bytes")
    rows = [
        ["host minimum (64-bit TFLM)", b("host_min_bytes_64bit"), "host"],
        ["`arena_used_bytes()` after AllocateTensors", b("arena_used_bytes"), a.get("where") or ""],
        ["device minimum (allocates, invokes, golden bit-exact)", b("device_min_bytes"), a.get("where") or ""],
        ["scratch gap (device minimum - arena_used_bytes())",
         NOT_MEASURED if a.get("scratch_gap_bytes") is None else f"{a['scratch_gap_bytes']:+,} B", ""],
        ["peak live activations", b("peak_live_activations_bytes"),
         f"flatbuffer, op {a.get('peak_op_index')} {a.get('peak_op') or ''}".rstrip()],
        ["device minimum / peak live activations", f"{dmin / peak:.3f}x" if peak and dmin else NOT_MEASURED, ""],
        *([["peak live activations, in-place plan", b("peak_live_in_place_bytes"),
            f"pipeline/codegen/memplan.py, op {a.get('peak_in_place_op_index')} {a.get('peak_in_place_op') or ''}".rstrip()],
           ["device minimum / in-place peak", f"{dmin / a['peak_live_in_place_bytes']:.3f}x" if dmin else NOT_MEASURED, ""]]
          if a.get("peak_live_in_place_bytes") else []),
        ["compiled arena when swept", b("compiled_arena_bytes"), "rendered config"],
        [f"recommended (+{a.get('margin_percent', 0):g} % + {a.get('margin_bytes', 0)} B)", b("recommended_bytes"), ""],
        ["sweep", f"{a.get('steps', '?')} steps in {a.get('sweep_seconds', '?')} s", "host wall time"],
    ]
    ap = a.get("applied") or {}
    if ap:
        if ap.get("confirmed"):
            rows.append(["applied and confirmed", f"{ap['arena_bytes']:,} B", f"golden {ap.get('golden')}, static RAM "
                         f"{ap['static_ram_before']:,} -> {ap['static_ram_after']:,} B (saved {ap['ram_saved_bytes']:,} B)"])
        else:
            rows.append(["apply refused (nothing written)", f"{ap.get('arena_bytes', 0):,} B", ap.get("reason", "")])
    return _table(["figure", "value", "where / note"], rows)


def compare_budget_markdown(budgets: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """One row per run: each RAM part, the RAM total and flash, "not measured" where a run did not."""
    def cell(n: int | None, of: int) -> str:
        return NOT_MEASURED if n is None else f"{n:,} ({100.0 * n / of:.1f} %)"

    rows = []
    for name, b in budgets:
        ram = b["ram_budget_bytes"]
        rows.append([name] + [cell(p["bytes"], ram) for p in b["ram_parts"]]
                    + [cell(b["ram_total_bytes"], ram), cell(b["flash_bytes"], b["flash_budget_bytes"])])
    return _table(["run", "static RAM w/o arena B", "arena B", "stack peak core 0 B", "stack peak core 1 B", "heap B",
                   "RAM total B of 264 KB", "flash B of 2 MB"], rows) + [
        "", "Every RAM part from the board's own `mem` where it was measured (else static RAM and arena from the "
            "ELF); RAM total only when every part was measured; flash from the ELF."]
