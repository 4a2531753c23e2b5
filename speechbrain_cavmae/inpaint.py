"""``python -m speechbrain_cavmae.inpaint``, kept for existing scripts: runs :mod:`speechbrain_cavmae.tools.inpaint`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("speechbrain_cavmae.tools.inpaint", run_name="__main__", alter_sys=True)
