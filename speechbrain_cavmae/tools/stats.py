"""The fbank mean and std of a manifest, for ``dataset_mean`` / ``dataset_std``.

::

    cavmae stats --manifest MANIFEST [--max_samples N] [--audio_length 1024] [--num_workers N]

See :func:`speechbrain_cavmae.data.stats.fbank_stats`.
"""


from speechbrain_cavmae.tools import common


def add_arguments(parser):
    """The flags of ``cavmae stats``."""
    common.add_manifest(parser)
    parser.add_argument("--max_samples", type=int, default=None,
                        help="a seeded random subset of this many clips (default: all)")
    parser.add_argument("--audio_length", type=int, default=None,
                        help="fbank frames per clip (padded / cropped; default: the data "
                        "configuration's, 1024)")
    common.add_num_workers(parser)


def run(args):
    """Print the mean and std."""
    from speechbrain_cavmae.data import fbank_stats

    mean, std = fbank_stats(
        args.manifest, {} if args.audio_length is None else {"audio_length": args.audio_length},
        args.max_samples,
        args.num_workers,
        progress=lambda it: common.progress(it, args, desc="stats", unit="batch"),
    )
    print(f"dataset_mean: {mean:.4f}\ndataset_std: {std:.4f}")
    return 0
