"""The house rules, checked: no import cycles among pipeline modules (lazy imports included), no
private name imported across modules, one stage table, one home for the target facts and the
protocol constants."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from pipeline.board import protocol
from pipeline.board.targets import RP2040
from pipeline.flow.table import STAGE_ORDER, STAGES

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "pipeline"


def _modules() -> dict[str, Path]:
    out = {}
    for f in sorted(PKG.rglob("*.py")):
        parts = list(f.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[tuple[str, str]]:
    """(module imported, name imported or '') for every import in ``path``, function-level ones too."""
    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found |= {(a.name, "") for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - node.level + 1] if node.level > 1 else base
                mod = ".".join(anchor + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:
                sub = f"{mod}.{a.name}"
                found.add((sub, "") if sub in known else (mod, a.name))
    return found


def _graph() -> dict[str, set[str]]:
    known = _modules()
    graph = {}
    for m, p in known.items():
        deps = set()
        for mod, _ in _imports(m, p, known):
            while mod and mod not in known:
                mod = mod.rpartition(".")[0]
            if mod and mod != m and not m.startswith(mod + "."):
                deps.add(mod)
        graph[m] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_lazy_imports_included():
    assert _cycles(_graph()) == []


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_private_name_imported_across_modules():
    known = _modules()
    crossing = sorted(f"{m} imports {name} from {mod}"
                      for m, p in known.items() for mod, name in _imports(m, p, known)
                      if mod.startswith("pipeline") and name.startswith("_") and not name.startswith("__"))
    assert crossing == []


def test_one_stage_table_read_by_the_recipe_loader():
    from pipeline import config
    from pipeline.flow.recipe import make_config

    assert STAGE_ORDER == tuple(s.name for s in STAGES)
    assert not hasattr(config, "STAGE_ORDER") and not hasattr(config, "STAGE_CONFIGS")
    for s in STAGES:
        assert type(make_config(s.name)) is s.config


def test_rp2040_facts_live_in_the_target_registry():
    facts = re.compile(r"264 \* 1024|270336|0x10000000|0x20000000|0xE48BFF56", re.I)
    where = sorted(str(p.relative_to(REPO)) for p in PKG.rglob("*.py")
                   if p.name != "targets.py" and facts.search(p.read_text(encoding="utf-8")))
    assert where == []
    assert RP2040.ram_bytes == 270336 and RP2040.flash_bytes == 2 * 1024 * 1024


def test_protocol_constants_agree_with_the_firmware():
    header = next(p for p in (REPO / "firmware" / "src").rglob("protocol.h"))
    defines = dict(re.findall(r"#define (PTF_\w+) (\d+)", header.read_text(encoding="utf-8")))
    assert int(defines["PTF_PROTO_VERSION"]) == protocol.PROTOCOL_VERSION
    assert int(defines["PTF_LINE_MAX"]) == protocol.MAX_REQUEST_BYTES
    assert int(defines["PTF_LOAD_MAX"]) == protocol.LOAD_CHUNK
