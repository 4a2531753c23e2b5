#!/usr/bin/env python3
"""Build CAV-MAE manifests from VGGSound's ``vggsound.csv`` and a folder of clips.

``vggsound.csv`` has no header; its columns are ``YTID, start_seconds, label, split``
(``train`` / ``test``). A clip is looked up in ``--clips_dir`` (recursively) under the
stems ``<YTID>_<start:06d>`` (the usual naming, e.g. ``KlsG1EnBEjc_000361.mp4``),
``<YTID>_<start>`` and ``<YTID>``, as an audio file and/or a video. Frames come from
``--frames_dir/frame_{i}/<video_id>.jpg`` when extracted, else from the video.

Writes ``<out_dir>/vggsound_train.json`` and ``<out_dir>/vggsound_test.json``
(original format), a ``.missing.txt`` next to each, and, unless ``--label_csv`` gives
the original class table, ``<out_dir>/class_labels_indices_vgg.csv`` (classes sorted by
name, the display name used as id)::

    python recipes/VGGSound/vggsound_prepare.py --csv vggsound.csv \\
        --clips_dir vggsound/video --output data/vggsound [--frames_dir vggsound/frames]

Authors
 * speechbrain-cavmae contributors 2026
"""

import argparse

from speechbrain_cavmae.data.prepare import prepare_vggsound
from speechbrain_cavmae.tools.prepare import add_source_arguments, print_reports


def main(argv=None):
    """Parse the flags (those of ``cavmae prepare vggsound``) and write the manifest(s)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_source_arguments(parser, "vggsound")
    args = parser.parse_args(argv)
    reports = prepare_vggsound(args.csv, args.clips_dir, args.output, args.frames_dir,
                               args.label_csv)
    reports.pop("label_csv")
    print_reports(reports)
    return 0


if __name__ == "__main__":
    main()
