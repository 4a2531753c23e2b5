"""Command-line tools: the commands of ``cavmae`` (:mod:`speechbrain_cavmae.cli`).

Modules
-------
convert           : an original ``.pth`` (or any checkpoint) to a model folder.
classify          : classify audio / video files with a model folder.
extract_features  : pooled audio and visual embeddings of a manifest.
retrieval         : audio <-> visual retrieval recall on a manifest.
inpaint           : reconstructions of masked inputs, as figures.
extract           : pre-extraction of audio and frames from videos.
prepare_videos    : a manifest from a folder of videos.
validate          : check every sample of a manifest.
toy               : the deterministic toy audio-visual dataset.
plots             : training curves (needs ``matplotlib``).
"""
