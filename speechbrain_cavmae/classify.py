"""``python -m speechbrain_cavmae.classify``, kept for existing scripts: runs :mod:`speechbrain_cavmae.tools.classify`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("speechbrain_cavmae.tools.classify", run_name="__main__", alter_sys=True)
