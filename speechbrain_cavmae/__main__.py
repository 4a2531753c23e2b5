"""``python -m speechbrain_cavmae <command> [flags]``: the ``cavmae`` command
(:mod:`speechbrain_cavmae.cli`), for environments without the console script."""

import sys

from speechbrain_cavmae.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m speechbrain_cavmae"))
