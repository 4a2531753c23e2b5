"""``AtomicCheckpointer.save_and_keep_only`` in two DDP processes, for ``tests/test_brain.py``.

Started as two processes (``processes.run_ranks``: gloo on CPU, ``RANK`` / ``WORLD_SIZE`` /
``MASTER_PORT`` set)::

    python tests/ddp_checkpointer.py OUT_DIR

The checkpointer holds a model and a recoverable saved the way ``ShardLoader`` saves its
position: its saver runs on every process (``save_on_main_only=False``: it gathers from
all of them), then only the main process writes, here slowly (0.5 s). The other process
is done with the checkpoint's files first and goes on to ``delete_checkpoints``, which
lists the checkpoints on every process while the main one deletes the old ones, one
collective call each: the processes must list the same checkpoints. Three checkpoints are
saved, keeping one; each process writes ``rank<r>.json``: the checkpoint names it listed
when each ``delete_checkpoints`` began and those left at the end.
"""

import json
import os
import sys
import time
from pathlib import Path

import torch
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks
from speechbrain.utils.distributed import if_main_process

from speechbrain_cavmae.training.state import AtomicCheckpointer


class GatheredThenWritten:
    """A recoverable whose saver gathers from every process, then the main one writes."""

    @mark_as_saver
    def save(self, path):
        gathered = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(gathered, torch.distributed.get_rank())
        if if_main_process():
            time.sleep(0.5)  # a slow file system: the other process is done before
            Path(path).write_text(json.dumps(gathered))

    @mark_as_loader
    def load(self, path, end_of_epoch=False):
        json.loads(Path(path).read_text())


register_checkpoint_hooks(GatheredThenWritten, save_on_main_only=False)


class ListingCheckpointer(AtomicCheckpointer):
    """Records the checkpoints this process lists when ``delete_checkpoints`` begins."""

    listed = []

    def delete_checkpoints(self, *args, **kwargs):
        self.listed.append(sorted(c.path.name for c in self.list_checkpoints()))
        return super().delete_checkpoints(*args, **kwargs)


def main(out):
    torch.distributed.init_process_group("gloo")
    rank = torch.distributed.get_rank()
    checkpointer = ListingCheckpointer(Path(out) / "save", {
        "model": torch.nn.Linear(2, 2), "position": GatheredThenWritten()})
    for step in range(3):
        checkpointer.save_and_keep_only(meta={"step": step}, end_of_epoch=False, num_to_keep=1)
    left = sorted(c.path.name for c in checkpointer.list_checkpoints())
    with open(os.path.join(out, f"rank{rank}.json"), "w", encoding="utf8") as handle:
        json.dump({"listed": checkpointer.listed, "left": left}, handle)
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
