"""``cavmae shard``: write a manifest's clips as WebDataset tar shards with an index.

::

    cavmae shard --manifest MANIFEST --output OUT_DIR [--shard_size 1000] [--prefix train]
        [--num_workers N] [--on_bad_sample raise|skip] [--audio_format flac|wav]
        [--label_csv LABELS]

(what SpeechBrain's ``create_wds_shards.py`` does, for CAV-MAE's clips). What the shards hold, the
index, resuming and bad samples: :mod:`speechbrain_cavmae.data.shard_writer`; reading them
in the recipes (``--train_shards`` ...): ``docs/scale.md``.
"""

import os
import sys

from speechbrain_cavmae.tools import common


def add_arguments(parser):
    """The flags of ``cavmae shard``."""
    common.add_manifest(parser)
    common.add_output(parser, help="folder of the shards and of <prefix>-index.json")
    parser.add_argument("--shard_size", type=int, default=1000, help="samples per shard")
    parser.add_argument("--prefix", default="train",
                        help="shard names: <prefix>-000000.tar, ...; index <prefix>-index.json")
    common.add_num_workers(parser)
    parser.add_argument("--on_bad_sample", default="raise", choices=["raise", "skip"],
                        help="stop at the first bad sample, or leave bad samples out")
    parser.add_argument("--frame_source", default="auto", choices=["auto", "extracted", "video"],
                        help="frames: the extracted JPEG layout or the video file")
    parser.add_argument("--audio_source", default="auto", choices=["auto", "wav", "video"],
                        help="audio: the wav entry or the video container")
    common.add_audio_channel(parser)
    parser.add_argument("--sample_rate", type=int, default=16000, help="audio sampling rate")
    parser.add_argument("--audio_format", default="flac", choices=["flac", "wav"],
                        help="audio in the shards: flac (smaller) or wav (decodes about 4x "
                        "faster: for loaders short of CPU, see docs/scale.md)")
    common.add_n_frames(parser)
    common.add_label_csv(parser)



def run(args):
    """Write the shards; 1 when a bad sample stopped it (``--on_bad_sample raise``)."""
    from speechbrain_cavmae.data import BadSampleError
    from speechbrain_cavmae.data import cap_workers
    from speechbrain_cavmae.data import INDEX_SUFFIX, shard_manifest
    from speechbrain_cavmae.tools.validate import format_table

    channel = args.audio_channel
    config = {"frame_source": args.frame_source, "audio_source": args.audio_source,
              "audio_channel": channel, "sample_rate": args.sample_rate,
              "n_frames": common.n_frames(args)}
    try:
        index = shard_manifest(args.manifest, args.output, args.shard_size, args.prefix,
                               cap_workers(max(args.num_workers, 1)), args.on_bad_sample,
                               config, args.label_csv, args.audio_format)
    except BadSampleError as err:
        print(f"error: bad sample (pass --on_bad_sample skip to leave such samples out): "
              f"{err}", file=sys.stderr)
        return 1
    bad = index["bad_samples"]
    if bad:
        print(format_table([(b["id"], b["file"], b["problem"]) for b in bad]))
        print(f"\n{len(bad)} bad sample(s) left out")
    print(f"{index['total']} samples in {len(index['shards'])} shards; index "
          f"{os.path.join(args.output, args.prefix + INDEX_SUFFIX)}")
    return 0
