"""``python -m speechbrain_cavmae.toy``, kept for existing scripts: runs :mod:`speechbrain_cavmae.tools.toy`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("speechbrain_cavmae.tools.toy", run_name="__main__", alter_sys=True)
