"""``python -m speechbrain_cavmae.validate``, kept for existing scripts: runs :mod:`speechbrain_cavmae.tools.validate`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("speechbrain_cavmae.tools.validate", run_name="__main__", alter_sys=True)
