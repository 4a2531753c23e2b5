"""Manifests for the recipes, from a folder of videos or from dataset metadata.

::

    cavmae prepare videos --videos VIDEO_DIR --output train.json
        [--labels_from_folder | --labels CSV]
    cavmae prepare audioset --segments balanced_train_segments.csv --clips_dir clips \\
        --output audioset_train.json [--frames_dir frames] [--label_csv labels.csv]
    cavmae prepare vggsound --csv vggsound.csv --clips_dir clips --output data/vggsound \\
        [--frames_dir frames] [--label_csv class_labels_indices_vgg.csv]

``videos`` is :mod:`speechbrain_cavmae.tools.prepare_videos`; ``audioset`` and ``vggsound``
are :func:`~speechbrain_cavmae.data.prepare.prepare_audioset` and
:func:`~speechbrain_cavmae.data.prepare.prepare_vggsound` (also what the recipes'
``audioset_prepare.py`` / ``vggsound_prepare.py`` run). Listed clips that are not found are
written to ``<manifest>.missing.txt`` and counted; the exit status is still 0.
"""


from speechbrain_cavmae.tools import common, prepare_videos

#: ``--no_progress`` / ``--debug`` / ``--log_level`` belong to each source's parser.
OWN_RUN_OPTIONS = True

AUDIOSET = """The manifest of the clips of an AudioSet ``*_segments.csv`` found under
``--clips_dir`` (see :func:`speechbrain_cavmae.data.prepare.prepare_audioset`)."""

VGGSOUND = """One manifest per split of VGGSound's ``vggsound.csv`` (``vggsound_<split>.json``
in ``--output``), of the clips found under ``--clips_dir`` (see
:func:`speechbrain_cavmae.data.prepare.prepare_vggsound`). Without ``--label_csv`` the
classes are sorted by name and the table is written to the output folder.
"""


#: The metadata flag and the output's meaning of each dataset source.
SOURCE_FLAGS = {
    "audioset": ("--segments", "AudioSet *_segments.csv", "manifest JSON to write"),
    "vggsound": ("--csv", "vggsound.csv (YTID, start, label, split)",
                 "folder of the manifests (vggsound_<split>.json)"),
}


def add_source_arguments(parser, source):
    """The flags of ``cavmae prepare <source>`` for ``"audioset"`` or ``"vggsound"`` (also
    the recipes' ``*_prepare.py``)."""
    metadata_flag, metadata_help, output_help = SOURCE_FLAGS[source]
    parser.add_argument(metadata_flag, required=True, help=metadata_help)
    parser.add_argument("--clips_dir", required=True,
                        help="folder of the downloaded clips (searched recursively)")
    common.add_output(parser, help=output_help)
    parser.add_argument("--frames_dir", default=None,
                        help="extracted frames (frame_{i}/<video_id>.jpg), when there are some")
    common.add_label_csv(parser)


def print_reports(reports):
    """One line per manifest written (``name: found of listed clips found, ...``)."""
    for name, report in reports.items():
        print(f"{name}: {report['found']} of {report['listed']} clips found, "
              f"{len(report['missing'])} missing (see {report['missing_file']}) -> "
              f"{report['manifest']}")


def add_arguments(parser):
    """The flags of ``cavmae prepare`` (one sub-command per source)."""
    sources = parser.add_subparsers(dest="source", metavar="<source>", required=True)
    videos = sources.add_parser("videos", help="a folder of videos",
                                description=common.description(prepare_videos),
                                formatter_class=common.HelpFormatter,
                                allow_abbrev=False)
    prepare_videos.add_arguments(videos)
    audioset = sources.add_parser("audioset", help="an AudioSet segment list",
                                  description=common.plain_text(AUDIOSET),
                                  formatter_class=common.HelpFormatter,
                                  allow_abbrev=False)
    add_source_arguments(audioset, "audioset")
    vggsound = sources.add_parser("vggsound", help="VGGSound's vggsound.csv",
                                  description=common.plain_text(VGGSOUND),
                                  formatter_class=common.HelpFormatter,
                                  allow_abbrev=False)
    add_source_arguments(vggsound, "vggsound")
    for sub in (videos, audioset, vggsound):
        common.add_run_options(sub)


def run(args):
    """Write the manifest(s) of ``args.source``."""
    if args.source == "videos":
        return prepare_videos.run(args)
    from speechbrain_cavmae.data import prepare

    if args.source == "audioset":
        reports = {"audioset": prepare.prepare_audioset(
            args.segments, args.clips_dir, args.output, args.frames_dir, args.label_csv)}
    else:
        reports = prepare.prepare_vggsound(args.csv, args.clips_dir, args.output,
                                           args.frames_dir, args.label_csv)
        reports.pop("label_csv")
    print_reports(reports)
    return 0
