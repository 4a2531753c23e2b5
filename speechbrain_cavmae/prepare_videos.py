"""``python -m speechbrain_cavmae.prepare_videos``, kept for existing scripts: runs :mod:`speechbrain_cavmae.tools.prepare_videos`."""

import runpy

if __name__ == "__main__":
    runpy.run_module("speechbrain_cavmae.tools.prepare_videos", run_name="__main__", alter_sys=True)
