"""Every frame of a clip decoded alone with seeking equals the sequential decode.

Uses the library's internals (frame ids of the whole stream, not the ten training frames):
each frame alone, all frames in one call, and ten random sets of five, against one
sequential decode. A seek that fails raises here (no fallback to sequential decoding). Run
from the repository root::

    OMP_NUM_THREADS=1 python benchmarks/results/2026-11-30-seek/verify_identity.py \\
        ../shared/samples/00W1lcxW-WU_40.000.mp4 ../shared/samples/KlsG1EnBEjc_000361.mp4
"""

import random
import sys
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from speechbrain_cavmae.data.frames import (  # noqa: E402
    _decode_sequentially, _decode_with_seeks, _PacketIndex)


def seeking(path, ids):
    with av.open(path) as container:
        stream = container.streams.video[0]
        return _decode_with_seeks(container, stream, _PacketIndex(container, stream), ids)


def main(paths):
    for path in paths:
        with av.open(path) as container:
            n = len(_PacketIndex(container, container.streams.video[0]))
        with av.open(path) as container:
            sequential, decoded = _decode_sequentially(container, container.streams.video[0],
                                                       list(range(n)))
        assert decoded == n and len(sequential) == n, (path, decoded, n)
        alone = [k for k in range(n) if not np.array_equal(seeking(path, [k])[k], sequential[k])]
        together = seeking(path, list(range(n)))
        at_once = [k for k in range(n) if not np.array_equal(together[k], sequential[k])]
        rng = random.Random(0)
        sets = 0
        for _ in range(10):
            ids = rng.sample(range(n), 5)
            got = seeking(path, ids)
            sets += any(not np.array_equal(got[k], sequential[k]) for k in ids)
        print(f"{path}: {n} frames; differing alone: {alone}, all at once: {at_once}, "
              f"random sets of 5 with a difference: {sets}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
