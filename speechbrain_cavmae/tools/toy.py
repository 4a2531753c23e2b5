"""Write the toy audio-visual dataset (:mod:`speechbrain_cavmae.data.toy`).

::

    cavmae toy --output data/toy [--n_train 480 --n_valid 80 --n_test 80 --seed 0]

prints the paths of the manifests and the label table as JSON.
"""

import json

from speechbrain_cavmae.tools import common


def add_arguments(parser):
    """The flags of ``cavmae toy``."""
    common.add_output(parser, help="folder of the dataset")
    for name, default, text in (("n_train", 480, "training clips"),
                                ("n_valid", 80, "validation clips"),
                                ("n_test", 80, "test clips"),
                                ("image_size", 64, "frame side in pixels"),
                                ("n_classes", 8, "classes"),
                                ("sample_rate", 16000, "audio sampling rate")):
        parser.add_argument(f"--{name}", type=int, default=default, help=text)
    parser.add_argument("--seed", type=int, default=0, help="seed of the whole dataset")
    parser.add_argument("--duration", type=float, default=1.94,
                        help="seconds per clip (1.94 s = 192 fbank frames)")
    parser.add_argument("--absolute_paths", action="store_true",
                        help="absolute wav/video_path entries in the manifests")



def run(args):
    """Write the dataset; prints the written paths as JSON."""
    from speechbrain_cavmae.data import generate_toy_dataset

    paths = generate_toy_dataset(
        args.output,
        n_train=args.n_train,
        n_valid=args.n_valid,
        n_test=args.n_test,
        seed=args.seed,
        duration=args.duration,
        image_size=args.image_size,
        n_classes=args.n_classes,
        sample_rate=args.sample_rate,
        absolute_paths=args.absolute_paths,
    )
    print(json.dumps(paths, indent=1))
    return 0
