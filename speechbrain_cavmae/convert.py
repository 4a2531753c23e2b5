"""``python -m speechbrain_cavmae.convert``, kept for existing scripts: runs :mod:`speechbrain_cavmae.tools.convert`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("speechbrain_cavmae.tools.convert", run_name="__main__", alter_sys=True)
