"""The arithmetic of the M0+ depthwise pair kernels' short requantization (DWREQ16 in
firmware/src/kernels/pk_dot_m0.S, chosen by pk_core.c's dw3_plane_channel), step for step in 32-bit
unsigned integers as the assembly does it, against pk_requantize compiled for the host: equal on
every accumulator the kernel sends through it (0 <= v < 2^16, right shift 1..16, mult >= 0)."""
import numpy as np

from tests.firmware.test_kernels_c import lib  # noqa: F401 (the fixture)

U32 = (1 << 32) - 1


def dwreq16(v: int, mult: int, right: int) -> int:
    mh, ml = mult >> 16, mult & 0xFFFF
    k = (1 << 14) + (1 << (right + 14))  # F_HALF as dw3_plane_channel sets it
    p = (v * mh) & U32
    q = ((v * ml) & U32) >> 16
    s = (p + q) & U32
    s = (s + k) & U32
    assert s == p + q + k, "no 32-bit wrap"
    return s >> (right + 15)


def test_short_requantization_equals_pk_requantize(lib):  # noqa: F811
    rng = np.random.default_rng(7)
    cases = 0
    for i in range(300):
        mult = int(rng.integers(1 << 30, 1 << 31)) if i % 5 else int(rng.integers(0, 1 << 31))
        right = int(rng.integers(1, 17))
        vals = np.concatenate([rng.integers(0, 1 << 16, 40), [0, 1, (1 << 16) - 1, (1 << 15), (1 << 15) - 1]])
        for v in vals:
            v = int(v)
            assert dwreq16(v, mult, right) == lib.pk_requantize(v, mult, -right), (v, mult, right)
            cases += 1
    assert cases == 300 * 45


def test_edges_of_the_range(lib):  # noqa: F811
    # The largest multiplier and accumulator (the sum closest to 2^32) and every right shift.
    for right in range(1, 17):
        for mult in ((1 << 31) - 1, 1 << 30, 1, 0):
            for v in ((1 << 16) - 1, (1 << 16) - 2, 0, 1):
                assert dwreq16(v, mult, right) == lib.pk_requantize(v, mult, -right), (v, mult, right)
