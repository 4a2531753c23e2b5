"""Worker processes of the data tools (``extract``, ``validate``, ``shard``).

Example
-------
>>> with process_pool(1) as pool:
...     list(pool.map(abs, [-1, 2]))
[1, 2]
"""

import multiprocessing
from concurrent.futures import ProcessPoolExecutor


def process_pool(workers, initializer=None, initargs=()):
    """A ``ProcessPoolExecutor`` of ``workers`` processes that are started fresh (``spawn``),
    not forked: a fork of a process that runs threads (FFmpeg's decoders, OpenMP, a test
    session that decoded video) can leave a lock held in the child, which then hangs.
    ``initializer`` and the functions given to the pool must be importable by name."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=initializer, initargs=initargs)
