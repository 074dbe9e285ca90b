"""``picotflm search``: the best compression recipe for a flash / RAM / accuracy budget (Optuna).

Each trial is a real run of the pipeline (:func:`pipeline.flow.runner.run_recipe`) up to host TFLM
verification: the base recipe's data, model and training (shared by every trial through the stage
cache), then the trial's prune / cluster / quantize settings, conversion and verification. Its figures
are measured, not predicted:

- **flash**: the ``.tflite`` bytes (the model's share of flash; the firmware around it is the same for
  every trial: 217,620 B more in the int8 emulator image),
- **RAM**: the host TFLM minimal arena (64-bit; the board needs a little less, see ``picotflm arena``),
- **accuracy**: host TFLM on the test split.

Search space: pruning (none | magnitude with target sparsity 0.3-0.8 | boundary with tau 0.05-0.4),
clustering (none | 8 | 16 | 32 values per kernel), weight bits (8: post-training int8 | 4: 4-bit QAT),
each compression stage fine-tuned for ``epochs`` epochs. Optuna's TPE sampler minimises flash and
RAM and maximises accuracy, with the budgets as constraints. A trial's run directory is named by the
hash of its recipe, so the same config is never run twice (the runner finds it up to date), and the
study lives in a SQLite file in the runs directory (or any database URL; ``memory``: not kept).
"""
from __future__ import annotations

import dataclasses
import io
import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

from pipeline.flow.rundir import RunDir, atomic_write_bytes, atomic_write_json, atomic_write_text, sha256_json
from pipeline.flow.recipe import Recipe, make_config, recipe_of_run
from pipeline.config import config_to_dict
from pipeline.errors import PipelineError

Log = Callable[[str], None]
SEARCH_STAGES = ("data", "model", "train", "prune", "cluster", "quantize", "convert", "verify")
FIRMWARE_STAGES = ("render", "build", "measure")
SPACE_VERSION = 2  # bump when the search space changes (a new study name)


@dataclasses.dataclass(frozen=True)
class Budget:
    max_flash: int
    max_ram: int
    min_accuracy: float

    def __post_init__(self) -> None:
        for name, v in (("--max-flash", self.max_flash), ("--max-ram", self.max_ram)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise PipelineError(f"{name} must be a positive number of bytes, got {v!r}", hint="e.g. --max-flash 6500")
        if not isinstance(self.min_accuracy, (int, float)) or not 0.0 <= self.min_accuracy <= 1.0:
            raise PipelineError(f"--min-accuracy must be in [0, 1], got {self.min_accuracy!r}", hint="e.g. --min-accuracy 0.9")

    def violations(self, t: dict[str, Any]) -> list[float]:
        """Optuna constraints: <= 0 where the trial meets the budget."""
        return [t["flash_bytes"] - self.max_flash, t["ram_bytes"] - self.max_ram, self.min_accuracy - t["accuracy"]]

    def meets(self, t: dict[str, Any]) -> bool:
        return all(v <= 0 for v in self.violations(t))

    def distance(self, t: dict[str, Any]) -> float:
        """How far a trial is from the budget: the sum of relative overshoots."""
        return (max(0.0, t["flash_bytes"] / self.max_flash - 1) + max(0.0, t["ram_bytes"] / self.max_ram - 1)
                + max(0.0, self.min_accuracy - t["accuracy"]) / max(self.min_accuracy, 1e-9))


def trial_recipe(base: Recipe, params: dict[str, Any], epochs: int) -> Recipe:
    """The base recipe's data/model/train (and convert/verify settings) with the trial's compression."""
    configs = {s: base.configs[s] for s in ("data", "model", "train", "convert", "verify") if s in base.configs}
    stages = ["data", "model", "train"]
    if params["prune"] != "none":
        stages.append("prune")
        p = {"method": params["prune"], "epochs": epochs, "frequency": _prune_frequency(base, epochs)}
        p.update({"target_sparsity": params["sparsity"]} if params["prune"] == "magnitude" else {"tau": params["tau"]})
        configs["prune"] = make_config("prune", p)
    if params["clusters"]:
        stages.append("cluster")
        configs["cluster"] = make_config("cluster", {"clusters": params["clusters"], "epochs": epochs,
                                                     "preserve_sparsity": params["prune"] != "none",
                                                     "fold_batchnorm": params["bits"] == 8})
    stages.append("quantize")
    qat4 = {"method": "qat", "weight_bits": 4, "epochs": epochs, "learning_rate": 1e-3, "lr_schedule": "cosine"}
    if params.get("keep8"):  # mixed precision: these layers keep 8-bit weights, the rest 4-bit
        qat4["layer_bits"] = {name: 8 for name in params["keep8"].split("+")}
    configs["quantize"] = make_config("quantize", {"method": "ptq"} if params["bits"] == 8 else qat4)
    stages += ["convert", "verify"]
    for s in ("convert", "verify"):
        configs.setdefault(s, make_config(s))
    key = sha256_json({s: config_to_dict(configs[s]) for s in stages})[:12]
    desc = describe(params)
    return Recipe(name=f"trial-{key}", description=f"picotflm search trial: {desc}", stages=tuple(stages),
                  configs={s: configs[s] for s in stages})


def _prune_frequency(base: Recipe, epochs: int) -> int:
    """tfmot's mask update period: 10 steps (the shipped default) unless a short run has too few steps
    (the pruning schedule needs several updates to reach its target)."""
    d, t = base.configs["data"], base.configs["train"]
    if d.source != "synthetic":
        return 1
    n_train = int(d.samples_per_class * len(d.classes) * (1 - d.val_fraction - d.test_fraction))
    end_step = int(math.ceil(n_train / t.batch_size) * epochs * 0.7)
    return max(1, min(10, end_step // 4))


def describe(params: dict[str, Any]) -> str:
    parts = []
    if params["prune"] == "magnitude":
        parts.append(f"prune magnitude {params['sparsity']:.2f}")
    elif params["prune"] == "boundary":
        parts.append(f"prune boundary tau {params['tau']:.2f}")
    if params["clusters"]:
        parts.append(f"cluster {params['clusters']}")
    parts.append("int8 PTQ" if params["bits"] == 8 else "int4 QAT")
    if params.get("keep8"):
        parts.append(f"{params['keep8'].replace('+', ' and ')} 8-bit")
    return ", ".join(parts)


# Mixed precision the search tries for MicroPizzaNet with 4-bit weights: which layers keep 8 bits
# ("" = none). The first conv sees the raw image; the classifier decides the class.
MIXED_KEEP8 = ["", "conv0", "conv0+classifier"]


def suggest(trial, mixed: bool = False) -> dict[str, Any]:
    p: dict[str, Any] = {"prune": trial.suggest_categorical("prune", ["none", "magnitude", "boundary"])}
    if p["prune"] == "magnitude":
        p["sparsity"] = round(trial.suggest_float("sparsity", 0.3, 0.8, step=0.05), 2)
    elif p["prune"] == "boundary":
        p["tau"] = round(trial.suggest_float("tau", 0.05, 0.4, step=0.05), 2)
    p["clusters"] = trial.suggest_categorical("clusters", [0, 8, 16, 32])
    p["bits"] = trial.suggest_categorical("bits", [8, 4])
    if mixed and p["bits"] == 4:
        p["keep8"] = trial.suggest_categorical("keep8", MIXED_KEEP8)
    return p


def run_trial(recipe: Recipe, trials_dir: Path, log: Log) -> dict[str, Any]:
    """One real run up to verify; the figures the search optimises."""
    from pipeline.flow.runner import RunOptions, run_recipe

    t0 = time.perf_counter()
    summary = run_recipe(recipe, RunDir.of(recipe.name, trials_dir), RunOptions(progress=False), log=log,
                         write_report=False)
    stages = summary.manifest.get("stages") or {}
    v = (stages.get("verify") or {}).get("metrics") or {}
    if (stages.get("verify") or {}).get("status") not in ("done", "up to date") or "tflm_test_accuracy" not in v:
        raise PipelineError(f"trial {recipe.name} did not reach verification",
                            hint="see the stage's reason in its manifest")
    return {"run": recipe.name, "accuracy": v["tflm_test_accuracy"], "flash_bytes": v["model_bytes"],
            "ram_bytes": v["host_arena_min_bytes"], "weight_bytes": v.get("weight_bytes"),
            "stages_run": summary.count("done"), "seconds": round(time.perf_counter() - t0, 2)}


def open_storage(url: str | None, out_dir: Path):
    """``None``: SQLite in ``out_dir``; ``memory``: in memory; anything else: an SQLAlchemy URL."""
    import optuna

    if url in ("memory", ":memory:"):
        return optuna.storages.InMemoryStorage(), "in memory (not kept)"
    if url is None:
        out_dir.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{out_dir / 'optuna.db'}"
    try:
        return optuna.storages.RDBStorage(url), url
    except Exception as e:  # SQLAlchemy: unknown dialect, missing driver, unreachable server
        raise PipelineError(f"cannot open the study storage {url!r}: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
                            hint="give a database URL such as sqlite:///runs/search/optuna.db, or `--storage memory`") from None


def search(base: Recipe, budget: Budget, *, trials: int, runs_dir: Path, name: str = "search",
           epochs: int = 2, storage: str | None = None, seed: int = 0, timeout: float | None = None,
           log: Log = lambda _: None) -> dict[str, Any]:
    """Run the study; write ``search.md``, ``search.json``, ``pareto.png`` and ``best.toml`` (or
    ``closest.toml`` when no trial meets the budget) into ``runs_dir/name``; return the result."""
    import optuna

    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise PipelineError(f"--trials must be at least 1, got {trials!r}", hint="e.g. --trials 12")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise PipelineError(f"--epochs must be at least 1, got {epochs!r}", hint="e.g. --epochs 2")
    for s in ("data", "model", "train"):
        if s not in base.stages:
            raise PipelineError(f"recipe {base.name} has no {s!r} stage", hint="search starts from a recipe that trains")
    out = RunDir.of(name, runs_dir).create().root
    trials_dir = out / "trials"
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial: our own line below
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # tf.function retracing notes, once per trial
    store, store_text = open_storage(storage, out)
    key = sha256_json({"base": {s: config_to_dict(base.configs[s]) for s in ("data", "model", "train") if s in base.configs},
                       "budget": dataclasses.asdict(budget), "epochs": epochs, "space": SPACE_VERSION, "seed": seed})[:12]
    study_name = f"{name}-{key}"
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(8, max(trials // 2, 1)))
    study = optuna.create_study(study_name=study_name, storage=store, sampler=sampler, load_if_exists=True,
                                directions=["maximize", "minimize", "minimize"])
    t_start = time.perf_counter()
    done_before = len([t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE])

    def objective(trial) -> tuple[float, float, float]:
        params = suggest(trial, mixed=base.configs["model"].name == "micropizzanet")
        recipe = trial_recipe(base, params, epochs)
        trial.set_user_attr("recipe", recipe.name)
        trial.set_user_attr("describe", describe(params))
        trial.set_user_attr("params", params)
        try:
            res = run_trial(recipe, trials_dir, log=lambda m: None)
        except PipelineError as e:
            log(f"trial {trial.number}: {describe(params)}: failed: {e}")
            raise
        for k, v in res.items():
            trial.set_user_attr(k, v)
        for what, v in zip(("flash", "ram", "accuracy"), budget.violations(res)):
            trial.set_constraint(what, float(v))  # <= 0: meets the budget; the sampler steers by these
        log(f"trial {trial.number}: {describe(params)}: host TFLM accuracy {res['accuracy']:.4f}, "
            f"{res['flash_bytes']:,} B .tflite, {res['ram_bytes']:,} B arena "
            f"({'meets' if budget.meets(res) else 'misses'} the budget; {res['seconds']:.1f} s"
            + (", up to date" if res["stages_run"] == 0 else "") + ")")
        return res["accuracy"], res["flash_bytes"], res["ram_bytes"]

    study.optimize(objective, n_trials=trials, timeout=timeout, catch=(PipelineError,))
    seconds = time.perf_counter() - t_start
    rows = []
    for t in study.trials:
        if t.state == optuna.trial.TrialState.COMPLETE and "accuracy" in t.user_attrs:
            a = t.user_attrs
            rows.append({"trial": t.number, "describe": a["describe"], "run": a["run"], "params": a.get("params") or dict(t.params),
                         "accuracy": a["accuracy"], "flash_bytes": a["flash_bytes"], "ram_bytes": a["ram_bytes"],
                         "weight_bytes": a.get("weight_bytes"), "seconds": a.get("seconds"), "meets": None})
    failed = [t.number for t in study.trials if t.state == optuna.trial.TrialState.FAIL]
    if not rows:
        raise PipelineError(f"no trial of the search finished ({len(failed)} failed)",
                            hint="run with --debug, or run one trial's recipe with `picotflm run`")
    for r in rows:
        r["meets"] = budget.meets(r)
    fronts = {"flash": pareto(rows, "flash_bytes"), "ram": pareto(rows, "ram_bytes")}
    meeting = [r for r in rows if r["meets"]]
    if meeting:
        best = max(meeting, key=lambda r: (r["accuracy"], -r["flash_bytes"], -r["ram_bytes"], -r["trial"]))
        toml_path = out / "best.toml"
    else:
        best = min(rows, key=lambda r: (budget.distance(r), -r["accuracy"], r["trial"]))
        toml_path = out / "closest.toml"
    recipe = _recipe_of(best["run"], trials_dir, base)
    atomic_write_text(toml_path, recipe_toml(recipe, header=[
        f"picotflm search, study {study_name}: trial {best['trial']} ({best['describe']})",
        f"measured: host TFLM test accuracy {best['accuracy']:.4f}, .tflite {best['flash_bytes']:,} B, "
        f"host TFLM arena {best['ram_bytes']:,} B",
        ("meets" if best["meets"] else "misses") + f" the budget: flash <= {budget.max_flash:,} B, "
        f"RAM <= {budget.max_ram:,} B, accuracy >= {budget.min_accuracy}"]))
    result = {
        "study": study_name, "storage": store_text, "budget": dataclasses.asdict(budget), "epochs": epochs,
        "trials_requested": trials, "trials_complete": len(rows), "trials_failed": failed,
        "trials_new": len(rows) - done_before, "seconds": round(seconds, 1), "trials": rows,
        "pareto_flash": [r["trial"] for r in fronts["flash"]], "pareto_ram": [r["trial"] for r in fronts["ram"]],
        "best": best, "met": bool(meeting), "recipe_file": str(toml_path),
    }
    atomic_write_json(out / "search.json", result)
    png = pareto_plot(rows, fronts, budget, out / "pareto.png")
    result["png"] = str(png)
    atomic_write_text(out / "search.md", "\n".join(search_markdown(result)) + "\n")
    result["markdown"] = str(out / "search.md")
    return result


def _recipe_of(run_name: str, trials_dir: Path, base: Recipe) -> Recipe:
    """The trial's recipe from its manifest, with the base recipe's firmware stages after verify."""
    manifest = json.loads((trials_dir / run_name / "manifest.json").read_text(encoding="utf-8"))
    firmware = [s for s in FIRMWARE_STAGES if s in base.stages]
    return recipe_of_run(manifest, {s: config_to_dict(base.configs[s]) for s in firmware}, name=run_name,
                         stages=list(manifest["recipe"]["stages"]) + firmware)


def pareto(rows: list[dict[str, Any]], cost: str) -> list[dict[str, Any]]:
    """Trials no other trial beats on both ``cost`` (lower) and accuracy (higher), by cost."""
    front, best_acc = [], -1.0
    for r in sorted(rows, key=lambda r: (r[cost], -r["accuracy"], r["trial"])):
        if r["accuracy"] > best_acc:
            front.append(r)
            best_acc = r["accuracy"]
    return front


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"not a TOML number: {v!r}")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):  # an inline table, e.g. quantize.layer_bits = { conv0 = 8 }
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(x)}" for k, x in v.items()) + " }" if v else "{}"
    raise ValueError(f"cannot write {type(v).__name__} as TOML")


def recipe_toml(recipe: Recipe, header: list[str] = ()) -> str:
    """A recipe as a TOML file that ``picotflm run`` reads back to the same configs."""
    lines = [f"# {h}" for h in header]
    lines += [f"description = {_toml_value(recipe.description)}", f"stages = {_toml_value(list(recipe.stages))}"]
    for s in recipe.stages:
        lines += ["", f"[{s}]"] + [f"{k} = {_toml_value(v)}" for k, v in config_to_dict(recipe.configs[s]).items()]
    return "\n".join(lines) + "\n"


def pareto_plot(rows: list[dict[str, Any]], fronts: dict[str, list], budget: Budget, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, cost, limit, label in ((axes[0], "flash", "flash_bytes", budget.max_flash, ".tflite bytes (flash)"),
                                        (axes[1], "ram", "ram_bytes", budget.max_ram, "host TFLM arena bytes (RAM)")):
        ax.scatter([r[cost] for r in rows], [r["accuracy"] for r in rows], c=["#55a868" if r["meets"] else "#999999"
                                                                              for r in rows], s=22, label="trials")
        f = fronts[key]
        ax.step([r[cost] for r in f], [r["accuracy"] for r in f], where="post", color="#c44e52", label="Pareto front")
        ax.scatter([r[cost] for r in f], [r["accuracy"] for r in f], color="#c44e52", s=30)
        ax.axvline(limit, color="#4c72b0", ls="--", lw=1, label="budget")
        ax.axhline(budget.min_accuracy, color="#4c72b0", ls=":", lw=1)
        ax.set_xlabel(label)
        ax.set_ylabel("host TFLM test accuracy")
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("picotflm search: green = meets the budget")
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def search_markdown(r: dict[str, Any]) -> list[str]:
    b = r["budget"]
    md = [f"# picotflm search `{r['study']}`", "",
          f"Budget: flash (.tflite) <= {b['max_flash']:,} B, RAM (host TFLM arena) <= {b['max_ram']:,} B, "
          f"host TFLM test accuracy >= {b['min_accuracy']}. {r['trials_complete']} trials "
          f"({r['trials_new']} new, {len(r['trials_failed'])} failed), {r['epochs']} fine-tuning epochs per "
          f"compression stage, {r['seconds']:.1f} s; storage: {r['storage']}. All figures measured (host).", ""]
    by = {t["trial"]: t for t in r["trials"]}

    def table(ids: list[int]) -> list[str]:
        out = ["| trial | recipe | accuracy | .tflite B | arena B | meets budget |", "|---|---|---|---|---|---|"]
        for i in ids:
            t = by[i]
            out.append(f"| {i} | {t['describe']} | {t['accuracy']:.4f} | {t['flash_bytes']:,} | {t['ram_bytes']:,} | "
                       f"{'yes' if t['meets'] else 'no'} |")
        return out

    md += ["## Pareto front: flash vs accuracy", ""] + table(r["pareto_flash"])
    md += ["", "## Pareto front: RAM vs accuracy", ""] + table(r["pareto_ram"])
    best = r["best"]
    md += ["", "## Result", ""]
    if r["met"]:
        md.append(f"Best trial meeting the budget: **{best['trial']}** ({best['describe']}), accuracy "
                  f"{best['accuracy']:.4f}, {best['flash_bytes']:,} B, arena {best['ram_bytes']:,} B; "
                  f"recipe: `{Path(r['recipe_file']).name}`.")
    else:
        md.append(f"**No trial meets the budget.** Closest: trial {best['trial']} ({best['describe']}), accuracy "
                  f"{best['accuracy']:.4f}, {best['flash_bytes']:,} B .tflite, arena {best['ram_bytes']:,} B "
                  f"({closest_text(r)}); recipe: `{Path(r['recipe_file']).name}`.")
    md += ["", "![Pareto fronts](pareto.png)", "", "## All trials", ""] + table(sorted(by))
    return md


def closest_text(r: dict[str, Any]) -> str:
    b, t = r["budget"], r["best"]
    misses = []
    if t["flash_bytes"] > b["max_flash"]:
        misses.append(f"flash {t['flash_bytes']:,} > {b['max_flash']:,} B")
    if t["ram_bytes"] > b["max_ram"]:
        misses.append(f"RAM {t['ram_bytes']:,} > {b['max_ram']:,} B")
    if t["accuracy"] < b["min_accuracy"]:
        misses.append(f"accuracy {t['accuracy']:.4f} < {b['min_accuracy']}")
    return "; ".join(misses)
