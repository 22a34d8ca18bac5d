"""The 32-bit xorshift PRNG that the AQM cores draw from, so that the Python and C implementations agree bit for bit.

Marsaglia's xorshift32 (shifts 13, 17, 5). Its state is a non-zero unsigned 32-bit integer and each draw
is the new state, so draws lie in [1, 2^32 - 1] and ``draw < p`` with ``p`` in [0, 2^32] is false for
p = 0 and true for p = 2^32. The state is seeded with :func:`seed_state`. The C port is::

    static inline uint32_t xorshift32(uint32_t *s)
    { uint32_t x = *s; x ^= x << 13; x ^= x >> 17; x ^= x << 5; return *s = x; }
"""

from __future__ import annotations

MASK32 = 0xFFFFFFFF
ZERO_SEED_STATE = 0x9E3779B9
"""Used when a seed maps to state 0 (xorshift32 would stay at 0 forever)."""


def seed_state(seed: int) -> int:
    """Initial state for ``seed``: its low 32 bits mixed by one multiply (Knuth's 2654435761), never 0."""
    state = ((seed & MASK32) * 2654435761 + 0x6D2B79F5) & MASK32
    return state or ZERO_SEED_STATE


def xorshift32(state: int) -> int:
    """The next state (= the next draw) after ``state``."""
    state ^= (state << 13) & MASK32
    state ^= state >> 17
    state ^= (state << 5) & MASK32
    return state
