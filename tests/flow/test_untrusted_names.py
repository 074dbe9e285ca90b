"""Untrusted names: run names never leave the runs directory; class names (from a user's folders or
data.classes) and the model name reach the generated C only escaped or validated, so the rendered
sources still compile and hold the names byte for byte. Class names also name sample folders, so
'/' and '\\' are refused in them; model names are part of C symbols, so they must be identifiers."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline.flow.rundir import RunDir
from pipeline.config import ConfigError, DataConfig, RenderConfig, check_class_name
from tests.conftest import cli
from tests.codegen.test_render import _render

HOSTILE_CLASSES = [
    'say "cheese"',  # quotes
    "end * of *) comment <!-- #define X 1",  # comment and preprocessor look-alikes ('/' is refused)
    "trigraphs ??= ??( ??) ??' ??! ??< ??> ??-",  # each one a character in ISO C (??/, a backslash, has '/')
    "größe 🍕 ピザ",  # non-ASCII, 4-byte UTF-8
    "format %s%n{0} 'single' `tick`",  # printf and format strings, other quotes
    "x" * 64,  # the longest allowed
]
BAD_CLASSES = ["", ".", "..", "a/b", "../up", "a\\b", "new\nline", "tab\there", "nul\0", "x" * 65, 7]
BAD_RUN_NAMES = ["..", "../x", "a/../../b", "/abs", "a/b", "a\\b", ".hidden", "-flag", "", "x" * 65, "pizzé",
                 "new\nline", "a..b", "con sole"]


@pytest.mark.parametrize("name", BAD_RUN_NAMES)
def test_run_names_that_could_escape_the_runs_directory_are_refused(name, tmp_path):
    with pytest.raises(ConfigError, match="run name"):
        RunDir.of(name, tmp_path / "runs")


@pytest.mark.parametrize("name", ["int8", "a.b", "A_1-2", "x" * 64, "v1.0"])
def test_accepted_run_names_stay_inside_the_runs_directory(name, tmp_path):
    runs = (tmp_path / "runs").resolve()
    assert RunDir.of(name, runs).root.resolve().parent == runs


def test_a_recipe_that_names_its_run_outside_the_runs_directory_is_refused(tmp_path):
    (tmp_path / "r.toml").write_text('name = "../../escaped"\nstages = ["data", "model"]\n')
    r = cli("run", str(tmp_path / "r.toml"), "--runs-dir", str(tmp_path / "runs"), "--no-progress")
    assert r.returncode == 2 and "picotflm: error: run name '../../escaped' is not allowed" in r.stderr, r.stderr
    assert not (tmp_path / "escaped").exists() and not (tmp_path.parent / "escaped").exists()


@pytest.mark.parametrize("name", BAD_CLASSES, ids=repr)
def test_class_names_that_are_paths_or_unprintable_are_refused(name):
    with pytest.raises(ConfigError, match="class name"):
        check_class_name(name)
    with pytest.raises(ConfigError):
        DataConfig(classes=("basic", name))


def test_hostile_but_printable_class_names_are_accepted():
    assert DataConfig(classes=tuple(HOSTILE_CLASSES)).classes == tuple(HOSTILE_CLASSES)


@pytest.mark.parametrize("name", ["9lives", "has space", 'quo"te', "*/", "../x", "x" * 65, "név", "a\\b"])
def test_model_names_must_be_c_identifiers(name):
    """The model name is part of C symbols (g_<name>_model_data): validated, not escaped."""
    with pytest.raises(ConfigError, match="not a valid C identifier"):
        RenderConfig(model_name=name)


CHECK = r'''
#include <cstdio>
#include <cstring>
#include "model_config.h"
#include "model_data.h"
#include "golden_data.h"
static const char* const kNames[] = PICOTFLM_CLASS_NAMES;
int main() {
  std::printf("%s\n", PICOTFLM_MODEL_NAME);
  for (unsigned i = 0; i < sizeof kNames / sizeof kNames[0]; i++) {
    for (const unsigned char* p = (const unsigned char*)kNames[i]; *p; p++) std::printf("%02x", *p);
    std::printf("\n");
  }
  std::printf("%d %u\n", PICOTFLM_NUM_CLASSES, (unsigned)(PICOTFLM_MODEL_DATA_SIZE > 0));
  return 0;
}
'''


@pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("g++") is None, reason="no host gcc/g++")
def test_generated_c_with_hostile_names_compiles_and_holds_them(tmp_path):
    model_name = "m" + "_x9" * 21  # a 64-character identifier, the longest allowed
    _render(tmp_path, cfg=RenderConfig(model_name=model_name), classes=HOSTILE_CLASSES)
    # The headers without TFLM (op_resolver.h needs it), their macros expanded, as strict ISO C and C++
    # (trigraphs are on in these modes).
    (tmp_path / "names.c").write_text(
        '#include "model_config.h"\n#include "model_data.h"\n#include "golden_data.h"\n'
        "static const char* const names[] = PICOTFLM_CLASS_NAMES;\n"
        "const char* model_name(void) { return PICOTFLM_MODEL_NAME; }\n"
        "const char* name_at(int i) { return names[i]; }\n")
    for std, lang in (("-std=c11", "c"), ("-std=c++11", "c++")):
        r = subprocess.run(["gcc", std, "-x", lang, "-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-pedantic",
                            "-Wtrigraphs", "-I", str(tmp_path), str(tmp_path / "names.c")], capture_output=True, text=True)
        assert r.returncode == 0, (std, r.stderr)
    (tmp_path / "check.cc").write_text(CHECK)
    exe = tmp_path / "check"
    r = subprocess.run(["g++", "-std=c++11", "-Wall", "-Wextra", "-Werror", "-Wtrigraphs", "-I", str(tmp_path),
                        str(tmp_path / "check.cc"), str(tmp_path / "model_data.cc"), str(tmp_path / "golden_data.cc"),
                        "-o", str(exe)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = subprocess.run([str(exe)], capture_output=True, check=True).stdout.decode().splitlines()
    assert out[0] == model_name
    assert [bytes.fromhex(h).decode("utf-8") for h in out[1:-1]] == HOSTILE_CLASSES
    assert out[-1] == f"{len(HOSTILE_CLASSES)} 1"
    # The golden comments name the class escaped, so a '*/' or '??/' in a name cannot end or continue them.
    text = (tmp_path / "golden_data.cc").read_text(encoding="ascii")
    assert '(\\"cheese\\")' not in text and "label 0 (\"say \\\"cheese\\\"\")" in text
