"""Command-line tools: the commands of ``cavmae`` (:mod:`speechbrain_cavmae.cli`).

Each command module has ``add_arguments(parser)`` and ``run(args)``; the tools use the
subpackages' public names (``speechbrain_cavmae.checkpoints``, ``speechbrain_cavmae.data``).

Modules
-------
common            : the flag vocabulary every tool shares, and how a tool runs.
inputs            : how the model tools load a model (the one door) and feed it.
convert           : an original ``.pth`` (or any checkpoint) to a model folder.
classify          : classify audio / video files with a model folder.
extract_features  : pooled audio and visual embeddings of a manifest (``cavmae embed``).
retrieval         : audio <-> visual retrieval recall on a manifest.
inpaint           : reconstructions of masked inputs, as figures.
prepare           : manifests from a folder of videos or dataset metadata (``cavmae prepare``).
prepare_videos    : a manifest from a folder of videos (``cavmae prepare videos``).
extract           : pre-extraction of audio and frames from videos.
shard             : WebDataset tar shards of a manifest, with an index.
validate          : check every sample of a manifest.
stats             : the fbank mean and std of a manifest.
balance           : class-balanced sampling weights of a manifest.
toy               : the deterministic toy audio-visual dataset.
plots             : training curves (needs ``matplotlib``).
"""
