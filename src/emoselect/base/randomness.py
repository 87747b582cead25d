"""Random streams: every random draw of emoselect comes from its own seeded generator, keyed by purpose
and place.
"""

from __future__ import annotations

import numpy as np


def random_stream(seed: int, purpose: str, *keys: int | np.integer | str) -> np.random.Generator:
    """An independent random generator for one purpose and place, e.g. ``(seed, "label-null", network, side)``.

    Every random quantity in emoselect is drawn from its own stream, so switching one analysis on or
    off never changes the numbers of another. ``keys`` are ints or strings (hashed with CRC-32).
    """
    import zlib

    def code(key: int | np.integer | str) -> int:
        return int(key) if isinstance(key, (int, np.integer)) else zlib.crc32(str(key).encode())

    return np.random.default_rng([int(seed), code(purpose), *(code(k) for k in keys)])
