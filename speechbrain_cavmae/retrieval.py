"""``python -m speechbrain_cavmae.retrieval``, kept for existing scripts: runs :mod:`speechbrain_cavmae.tools.retrieval`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("speechbrain_cavmae.tools.retrieval", run_name="__main__", alter_sys=True)
