"""``python -m speechbrain_cavmae.extract_features``, kept for existing scripts: runs :mod:`speechbrain_cavmae.tools.extract_features`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("speechbrain_cavmae.tools.extract_features", run_name="__main__", alter_sys=True)
