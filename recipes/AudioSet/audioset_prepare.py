#!/usr/bin/env python3
"""Build a CAV-MAE manifest from AudioSet's segment CSV and a folder of downloaded clips.

AudioSet lists its clips in ``balanced_train_segments.csv``, ``eval_segments.csv`` and
``unbalanced_train_segments.csv`` (comment lines start with ``#``; columns ``YTID,
start_seconds, end_seconds, positive_labels``). A clip is looked up in ``--clips_dir``
(recursively) under the stems ``<YTID>_<start:.3f>`` (the original naming, e.g.
``00W1lcxW-WU_40.000.mp4``), ``<YTID>_<start as int>``, ``<YTID>`` and ``Y<YTID>``, as an
audio file (wav, flac...) and/or a video (mp4, mkv...). Frames come from
``--frames_dir/frame_{i}/<video_id>.jpg`` when extracted, else from the video.

Writes the original-format manifest ``--output`` (``{"data": [{video_id, wav,
video_path | video, labels}]}``) and ``<output>.missing.txt`` (the listed clips not
found), and reports how many are missing::

    python recipes/AudioSet/audioset_prepare.py --segments eval_segments.csv \\
        --clips_dir audioset/eval --output data/audioset_eval.json \\
        [--frames_dir audioset/frames] [--label_csv class_labels_indices.csv]

Authors
 * speechbrain-cavmae contributors 2026
"""

import argparse

from speechbrain_cavmae.data.prepare import prepare_audioset
from speechbrain_cavmae.tools.prepare import add_source_arguments, print_reports


def main(argv=None):
    """Parse the flags (those of ``cavmae prepare audioset``) and write the manifest(s)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_source_arguments(parser, "audioset")
    args = parser.parse_args(argv)
    reports = {"audioset": prepare_audioset(args.segments, args.clips_dir, args.output,
                                            args.frames_dir, args.label_csv)}
    print_reports(reports)
    return 0


if __name__ == "__main__":
    main()
