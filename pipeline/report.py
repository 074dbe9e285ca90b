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

from pipeline.artifacts import atomic_write_bytes, RunDir, atomic_write_json, atomic_write_text

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


def build_report(manifest: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The Markdown text and the JSON document of a manifest."""
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
    md += summary_markdown(manifest)

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
    }
    return "\n".join(md), doc


def write_report(run_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.json`` into ``run_dir`` from its manifest; return their paths."""
    run_dir = Path(run_dir)
    run = RunDir(root=run_dir, name=run_dir.name)
    text, doc = build_report(run.read_manifest())
    md_path = atomic_write_text(run_dir / "report.md", text)
    json_path = atomic_write_json(run_dir / "report.json", doc)
    return md_path, json_path


# ------------------------------------------------------------------- key figures and comparison
def _m(manifest: dict[str, Any], stage: str) -> dict[str, Any]:
    e = (manifest.get("stages") or {}).get(stage) or {}
    return (e.get("metrics") or {}) if e.get("status") in ("done", "up to date") else {}


def key_figures(manifest: dict[str, Any]) -> dict[str, Any]:
    """The figures a firmware engineer compares, each with where it was measured (None: not measured)."""
    train, conv, ver = _m(manifest, "train"), _m(manifest, "convert"), _m(manifest, "verify")
    build, meas = _m(manifest, "build"), _m(manifest, "measure")
    last_keras = None
    for st in ("prune", "cluster", "quantize"):
        acc = _m(manifest, st).get("keras_val_accuracy")
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
        "measured_on": meas.get("where"),
        "device_arena_used_bytes": mem.get("arena_used"),
        "device_arena_size_bytes": mem.get("arena_size"),
        "device_stack_peak_bytes": mem.get("stack_peak"),
        "device_ram_total_bytes": meas.get("ram_total_bytes"),
        "device_median_us": bench.get("median_us"),
        "device_median_cycles": bench.get("median_cycles"),
        "cycles_per_mac": meas.get("cycles_per_mac"),
        "golden_exact": f"{golden.get('exact')}/{golden.get('count')}" if golden else None,
        "layers": ver.get("layers") or [],
    }


def summary_markdown(manifest: dict[str, Any]) -> list[str]:
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
        ["cycles per MAC", v(k["cycles_per_mac"]), k["measured_on"] or na],
        ["flash used of 2 MB", v(k["flash_bytes"], " B"), "ELF sections"],
        ["static RAM (.data + .bss incl. arena)", v(k["static_ram_bytes"], " B"), "ELF sections"],
        ["stack peak", v(k["device_stack_peak_bytes"], " B"), k["measured_on"] or na],
        ["RAM total (static + heap + stack peak) of 264 KB", v(k["device_ram_total_bytes"], " B"),
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
    ("device_median_us", "board median us"), ("cycles_per_mac", "cycles/MAC"), ("flash_bytes", "flash B"),
    ("device_ram_total_bytes", "RAM total B"), ("golden_exact", "golden exact"),
]


def write_comparison(runs: list[str], runs_dir: str | Path, out_dir: Path) -> tuple[Path, Path, list[Path]]:
    """compare.md / compare.json across runs, and PNG plots (size vs accuracy; per-layer weight bytes)."""
    figs = [key_figures(_load_manifest(r, runs_dir)) for r in runs]
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
    pngs = _plots(figs, out_dir)
    md += [f"![{p.stem}]({p.name})" for p in pngs] + [""]
    md_path = atomic_write_text(out_dir / "compare.md", "\n".join(md))
    json_path = atomic_write_json(out_dir / "compare.json", {"runs": figs})
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
