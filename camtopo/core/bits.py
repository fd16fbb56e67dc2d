"""Bit helpers for tick masks: bit k of a uint64 is tick ``start + k`` of a block (<= 64 ticks)."""

from __future__ import annotations

import numba as nb
import numpy as np

MAX_BLOCK_TICKS = 64
ONE = np.uint64(1)
ALL = np.uint64(0xFFFFFFFFFFFFFFFF)


@nb.njit(cache=True, inline="always")
def popcount(x: np.uint64) -> int:
    """Number of set bits (SWAR; numba has no portable popcnt intrinsic)."""
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return int((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@nb.njit(cache=True, inline="always")
def through_nth_bit(x: np.uint64, n: int) -> np.uint64:
    """Mask of the bits of ``x`` up to and including its n-th set bit (n >= 1, counted from bit 0).

    Used to split a block's ticks at the exact tick where a counter reaches a limit, so that
    block boundaries never change the counts.
    """
    seen = 0
    for k in range(64):
        if (x >> np.uint64(k)) & np.uint64(1):
            seen += 1
            if seen == n:
                if k == 63:
                    return np.uint64(0xFFFFFFFFFFFFFFFF)
                return (np.uint64(1) << np.uint64(k + 1)) - np.uint64(1)
    return np.uint64(0xFFFFFFFFFFFFFFFF)


@nb.njit(cache=True, inline="always")
def tick_range_mask(lo: int, hi: int) -> np.uint64:
    """Bits lo..hi inclusive (clipped to 0..63); 0 when empty."""
    if lo < 0:
        lo = 0
    if hi > 63:
        hi = 63
    if hi < lo:
        return np.uint64(0)
    width = hi - lo + 1
    if width == 64:
        return np.uint64(0xFFFFFFFFFFFFFFFF)
    return ((np.uint64(1) << np.uint64(width)) - np.uint64(1)) << np.uint64(lo)
