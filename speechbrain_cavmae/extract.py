"""``python -m speechbrain_cavmae.extract``, kept for existing scripts: runs :mod:`speechbrain_cavmae.tools.extract`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("speechbrain_cavmae.tools.extract", run_name="__main__", alter_sys=True)
