"""`compare` shows each run's model and weight bytes as stored on the device and its cycles (board and
CONV_2D ops), from the render and measure stages' metrics; empty cells where a run has none."""
from __future__ import annotations

import json

from pipeline.analysis.report import write_comparison


def manifest(run: str, render: dict | None, ops: list[tuple[str, int]] | None) -> dict:
    stages = {}
    if render is not None:
        stages["render"] = {"status": "done", "metrics": render}
    if ops is not None:
        stages["measure"] = {"status": "done", "metrics": {
            "where": "emulated Pico", "bench": {"median_us": 7000, "median_cycles": sum(c for _, c in ops)},
            "profile": {"ops": [{"op": o, "cycles": c, "us": c // 125} for o, c in ops]}}}
    return {"run": run, "recipe": {"name": run, "stages": list(stages)}, "stages": stages}


def test_compare_has_device_bytes_and_cycles(tmp_path):
    runs = {
        "dense": manifest("dense", {"device_model_bytes": 7680, "device_weight_bytes": 1264, "codebooks": []},
                          [("CONV_2D", 400), ("DEPTHWISE_CONV_2D", 100), ("CONV_2D", 50)]),
        "cb": manifest("cb", {"device_model_bytes": 4832, "device_weight_bytes": 976,
                              "codebooks": [{"op": 2}, {"op": 4}]}, [("CONV_2D", 420), ("MEAN", 7)]),
        "old": manifest("old", None, None),
    }
    for name, m in runs.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text(json.dumps(m))
    md, js, _ = write_comparison(list(runs), tmp_path, tmp_path / "cmp")
    lines = md.read_text().split("\n## ")[0].splitlines()  # the comparison table, before the sections
    cells = lambda l: [c.strip() for c in l.strip().strip("|").split("|")]  # noqa: E731
    header = cells(next(l for l in lines if l.startswith("| run |")))
    row = {cells(l)[0]: cells(l) for l in lines if l.startswith(("| dense ", "| cb ", "| old "))}
    col = {h: i for i, h in enumerate(header)}
    for name, model, weights, books, cycles, conv in (("dense", "7,680", "1,264", "0", "550", "450"),
                                                      ("cb", "4,832", "976", "2", "427", "420"),
                                                      ("old", "", "", "", "", "")):
        r = row[name]
        assert (r[col["model B on device"]], r[col["weights B on device"]], r[col["codebook ops"]],
                r[col["board cycles"]], r[col["CONV_2D cycles"]]) == (model, weights, books, cycles, conv), name
    figs = {f["run"]: f for f in json.loads(js.read_text())["runs"]}
    assert figs["cb"]["device_model_bytes"] == 4832 and figs["old"]["device_model_bytes"] is None
