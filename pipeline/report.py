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

from pipeline.artifacts import RunDir, atomic_write_json, atomic_write_text

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
