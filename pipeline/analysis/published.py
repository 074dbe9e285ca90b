"""Figures published for models picotflm did not train, measured on a real Pico by others, keyed by the
model's sha256: a report shows its own measurement beside them (a different board, kernels and
conditions: a reference, never a substitute)."""
from __future__ import annotations

from typing import Any

PUBLISHED: dict[str, dict[str, Any]] = {
    # pico-tflmicro's examples/person_detection person_detect_model_data.cpp (int8, 96x96x1 -> 2)
    "808cfdfc0cf3a6fa6f6fa26bfa379ea97c16d5db7334637766e39c3408502e9d": {
        "model": "pico-tflmicro person detection (int8)",
        "one_core_ms": 823, "two_cores_ms": 587,
        "source": "pico-tflmicro benchmark_results.txt: a real Pico at 125 MHz, pico-tflmicro's stock kernels",
    },
}


def published_for(sha256: str | None) -> dict[str, Any] | None:
    """The published figures of the model with this sha256, or None."""
    return PUBLISHED.get(sha256 or "")


def published_line(sha256: str | None, one_core_us: float | None, two_cores_us: float | None) -> str | None:
    """"published on a real Pico: 823 ms one core, 587 ms two cores (...); here: ..." or None."""
    p = published_for(sha256)
    if p is None:
        return None
    here = []
    if one_core_us:
        here.append(f"{one_core_us / 1000:.1f} ms one core ({p['one_core_ms'] * 1000 / one_core_us:.2f}x)")
    if two_cores_us:
        here.append(f"{two_cores_us / 1000:.1f} ms two cores ({p['two_cores_ms'] * 1000 / two_cores_us:.2f}x)")
    return (f"{p['model']}: published {p['one_core_ms']} ms one core, {p['two_cores_ms']} ms two cores "
            f"({p['source']}); measured here: " + (", ".join(here) or "not measured"))
