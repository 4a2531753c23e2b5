"""Class-balanced sampling weights of a manifest (the original ``gen_weight_file.py``).

::

    cavmae balance --manifest MANIFEST --label_csv LABEL_CSV --output weights.csv

See :func:`speechbrain_cavmae.data.balance.class_balanced_weights`; the recipes compute the
same weights themselves with ``balanced_sampling: True``.
"""


from speechbrain_cavmae.tools import common


def add_arguments(parser):
    """The flags of ``cavmae balance``."""
    common.add_manifest(parser)
    common.add_label_csv(parser, required=True)
    common.add_output(parser, help="CSV of the weights, one per line in manifest order")


def run(args):
    """Write the weights."""
    import numpy as np

    from speechbrain_cavmae.data import class_balanced_weights

    weights = class_balanced_weights(args.manifest, args.label_csv)
    common.ensure_parent(args.output)
    np.savetxt(args.output, weights, delimiter=",")
    print(f"{len(weights)} weights written to {args.output} (min {weights.min():.3f}, "
          f"max {weights.max():.3f})")
    return 0
