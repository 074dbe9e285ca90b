"""The arithmetic of the M0+ depthwise pair kernels' short requantization (DWREQ16 in
firmware/src/kernels/pk_dot_m0.S, chosen by pk_core.c's dw3_plane_channel), step for step in 32-bit
unsigned integers as the assembly does it, against pk_requantize compiled for the host: equal on
every accumulator the kernel sends through it (0 <= v < 2^16 with no partial sum reaching 2^32, a
left shift up to 15 or a right shift 1..16, mult >= 0)."""
import numpy as np

from tests.firmware.test_kernels_c import lib  # noqa: F401 (the fixture)


def constants(mult: int, shift: int) -> tuple[int, int, int, int]:
    """mh, ml, K, total right shift, as dw3_plane_channel sets them."""
    left, right = max(shift, 0), max(-shift, 0)
    m = mult << left
    k = (1 << 14) + ((1 << (right + 14)) if right > 0 else 0)
    return m >> 16, m & 0xFFFF, k, right + 15


def taken(v_max: int, mult: int, shift: int) -> bool:
    """dw3_plane_channel's test for DWREQ16 (lo_at >= -1 aside)."""
    mh, _, k, _ = constants(mult, shift)
    return v_max < 65536 and mh < 65536 and max(v_max, 0) * mh + 0xFFFF + k < 1 << 32


def dwreq16(v: int, mult: int, shift: int) -> int:
    mh, ml, k, sh = constants(mult, shift)
    p = v * mh
    q = (v * ml) >> 16
    assert p < 1 << 32 and v * ml < 1 << 32 and p + q + k < 1 << 32  # each 32-bit step exact
    return (p + q + k) >> sh


def check(lib, v, mult, shift):  # noqa: F811
    assert dwreq16(v, mult, shift) == lib.pk_requantize(v, mult, shift), (v, mult, shift)


def test_short_requantization_equals_pk_requantize(lib):  # noqa: F811
    rng = np.random.default_rng(7)
    cases = 0
    while cases < 600 * 33:
        i = cases // 33
        mult = int(rng.integers(1 << 30, 1 << 31)) if i % 5 else int(rng.integers(0, 1 << 31))
        shift = int(rng.integers(-16, 0)) if i % 3 else int(rng.integers(0, 8))
        if not taken(0, mult, shift):
            continue  # mult << left too wide for the short path at any accumulator
        v_max = int(rng.integers(0, 1 << 16))
        while not taken(v_max, mult, shift):
            v_max //= 2
        for v in list(rng.integers(0, v_max + 1, 30)) + [0, 1, v_max]:
            check(lib, int(v), mult, shift)
            cases += 1
    assert cases == 600 * 33


def test_edges_of_the_range(lib):  # noqa: F811
    # The largest multiplier and accumulator the test admits, every right shift and some left shifts.
    n = 0
    for shift in range(-16, 8):
        for mult in ((1 << 31) - 1, 1 << 30, (1 << 30) + 1, 1, 0):
            for v in ((1 << 16) - 1, (1 << 16) - 2, (1 << 15), 255, 1, 0):
                if taken(v, mult, shift):
                    check(lib, v, mult, shift)
                    n += 1
    assert n > 300
