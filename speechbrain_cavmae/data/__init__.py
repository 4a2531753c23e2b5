"""Audio-visual data pipeline for CAV-MAE on SpeechBrain's dataio.

Modules
-------
errors    : :class:`BadSampleError`.
manifest  : label tables and manifest readers (original CAV-MAE JSON,
            SpeechBrain JSON/CSV).
audio     : waveform loading from audio files or video containers.
frames    : frame index sampling, decoding, pre-extracted layout, image
            transform.
augment   : mixup, SpecAugment masks, noise + roll, label smoothing.
dataset   : :func:`build_dataset`, collate with the bad-sample policy.
balance   : class-balanced sampling weights (CLI).
stats     : dataset fbank mean/std (CLI).
"""

from speechbrain_cavmae.exports import lazy_exports

#: Public names, by module (imported on first use: ``cavmae --help`` stays light).
_EXPORTS = {
    "BadSampleError": "errors", "ManifestError": "errors",
    "load_audio": "audio",
    "IMAGENET_MEAN": "frames", "IMAGENET_STD": "frames", "extracted_frame_path": "frames",
    "load_extracted_frame": "frames", "load_video_frames": "frames", "resized_size": "frames",
    "LabelTable": "manifest", "read_manifest": "manifest", "split_labels": "manifest",
    "unlabelled_entries": "manifest", "write_manifest": "manifest",
    "AVSampleLoader": "dataset", "build_dataset": "dataset", "collate_av": "dataset",
    "hparams_config": "dataset", "resolve_config": "dataset",
    "cap_workers": "pool", "process_pool": "pool",
    "VIDEO_EXTS": "prepare", "prepare_audioset": "prepare", "prepare_vggsound": "prepare",
    "class_balanced_weights": "balance",
    "fbank_stats": "stats",
    "INDEX_SUFFIX": "shard_writer", "shard_manifest": "shard_writer",
    "generate_toy_dataset": "toy",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
