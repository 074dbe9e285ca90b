"""The M0+ assembly's source (firmware/src/kernels/pk_dot_m0.S) read as text: its .equ names are
global to the file, so a name given two values makes a macro expanded after the second one read a
field at the other offset; each name must have one value."""
import re
from collections import defaultdict
from pathlib import Path

ASM = Path(__file__).resolve().parents[2] / "firmware" / "src" / "kernels" / "pk_dot_m0.S"


def test_each_equ_name_has_one_value():
    values = defaultdict(set)
    for line in ASM.read_text().splitlines():
        m = re.match(r"\s*\.equ\s+(\w+)\s*,\s*([^/]+?)\s*(//.*)?$", line)
        if m:
            values[m.group(1)].add(m.group(2))
    assert len(values) > 20  # the offsets of every argument block and frame
    clashes = {n: sorted(v) for n, v in values.items() if len(v) > 1}
    defined_twice = [n for n in values if len(re.findall(rf"^\s*\.equ\s+{n}\s*,", ASM.read_text(), re.M)) > 1]
    assert clashes == {} and defined_twice == [], (clashes, defined_twice)
