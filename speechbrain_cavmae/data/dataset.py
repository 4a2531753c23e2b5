"""Audio-visual datasets on SpeechBrain's ``DynamicItemDataset``.

:func:`build_dataset` reads a manifest (any format of
:mod:`~speechbrain_cavmae.data.manifest`) and returns a
:class:`AVDataset` (a ``DynamicItemDataset``) whose items are dicts with

=========  ===============================  =================================
key        shape                            when
=========  ===============================  =================================
id         str                              always
fbank      [audio_length, n_mels] float    not ``features_on_device``
wav        [samples] float                  ``features_on_device``
frame      [3, image_size, image_size] float        always (train: random of N,
                                            eval: ``frame_index`` / middle)
frames     [N, 3, image_size, image_size] float     eval with ``multi_frame``
fbanks     [N, audio_length, n_mels] float  eval with ``multi_frame`` and
                                            ``frame_segments`` (frame k's segment)
labels     [num_classes] float              a label CSV was given
=========  ===============================  =================================

Batch them with :func:`collate_av` (a SpeechBrain ``PaddedBatch`` that
also drops skipped samples).

Configuration keys (``DEFAULT_CONFIG``; recipes set them from yaml)
-------------------------------------------------------------------
sample_rate (16000), audio_length (1024, frames), n_mels (128),
dataset_mean (-5.081), dataset_std (4.4849), skip_norm (False: set True only to compute
statistics), freqm (0), timem (0), mixup (0.0, probability), mixup_alpha
(10.0, Beta(a, a)), noise (False), label_smooth (0.0), n_frames (10),
image_size (224), frame_index (-1: middle frame ``int(n_frames / 2)`` at eval),
frame_source ('auto' | 'extracted' | 'video'), audio_source ('auto' |
'wav' | 'video'), audio_channel (0: first channel, as the original ``sox remix 1``;
None: average the channels), image_interpolation ('bilinear' | 'bicubic':
resize filter for frames decoded from the video; 'bilinear' reproduces the
original extractor, extracted 224 px JPEGs always get the loader's
bicubic),
features_on_device (False), multi_frame (False), on_bad_sample ('raise' |
'skip'), video_threads (1, FFmpeg threads per video decode), frame_segments (False),
clip_length (1024, fbank frames), frame_span_s (10.0: the seconds over which the
``n_frames`` frames decoded from a video are spread, as the original extractor spreads them).

Frame segments (CAV-MAE Sync). With ``frame_segments: True`` the audio is not the
clip's first ``audio_length`` frames but the segment of ``audio_length`` fbank frames
paired with the chosen frame: the clip's fbank is computed over ``clip_length`` frames
(zero padded / cut, as CAV-MAE's 1024), frame ``k`` of ``n_frames`` sits at
``round(k * clip_length / n_frames)`` and its segment is centred there, shifted to lie
inside the clip at its ends (:func:`~speechbrain_cavmae.data.frames.frame_segment`, the
Sync authors' ``map_frame_to_spectrogram``). Training draws a random frame, evaluation
takes ``frame_index`` (or the middle one) and, with ``multi_frame``, also returns every
frame with its segment (``frames``, ``fbanks``). SpecAugment and noise act on the
segment, normalisation as usual; a mixup partner contributes its frame ``k`` and the
same segment. With ``audio_length == clip_length`` every frame gets the whole clip
(plain CAV-MAE's pairing). The pairing assumes the frames span the ``clip_length`` frames:
Sync's 16 frames over 10 s and 1024 fbank frames (10.24 s) are 2.4 % apart, as in their
code; for longer clips (windows of a plain CAV-MAE model centred on each frame) set
``clip_length`` to ``frame_span_s / 0.01``.

freqm, timem, mixup, noise and label_smooth act only when ``train=True``.
Mixup is pairwise inside the dataset like the original: the partner is a
random sample of the whole dataset, its waveform and frame are mixed
before the features are computed. A partner that fails to load is logged
and another is drawn (the sample itself is not dropped). With
``features_on_device`` SpecAugment and noise must be applied on the
device with :class:`~speechbrain_cavmae.data.augment.FbankAugment`.

Sources: ``audio_source='auto'`` uses the entry's ``wav`` when present,
otherwise its ``video``; ``frame_source='auto'`` uses the extracted
``video_path/frame_{i}/{video_id}.jpg`` layout when ``video_path`` is set
and ``video_path/frame_0`` exists, otherwise decodes ``video`` (or ``wav``
when that is a video container).

Example
-------
>>> from speechbrain_cavmae.data.dataset import DEFAULT_CONFIG
>>> DEFAULT_CONFIG["audio_length"], DEFAULT_CONFIG["on_bad_sample"]
(1024, 'raise')
"""

import logging
import multiprocessing
import os
from collections import namedtuple

import torch
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.dataio.dataset import DynamicItemDataset

from speechbrain_cavmae.model.patch_embed import AUDIO_LENGTH

from .fbank import DEFAULT_MEAN, DEFAULT_STD, compute_fbank, normalize_fbank
from . import augment
from .audio import SOUNDFILE_EXTS, load_audio
from .errors import BadSampleError
from .frames import (
    ImageTransform,
    extracted_frame_path,
    frame_segment,
    load_extracted_frame,
    load_video_frames,
    middle_frame,
)
from .errors import ManifestError
from .manifest import LabelTable, check_labelled, read_manifest

logger = logging.getLogger(__name__)

DEFAULT_CONFIG = {
    "sample_rate": 16000,
    "audio_length": AUDIO_LENGTH,
    "n_mels": 128,
    "dataset_mean": DEFAULT_MEAN,
    "dataset_std": DEFAULT_STD,
    "skip_norm": False,
    "freqm": 0,
    "timem": 0,
    "mixup": 0.0,
    "mixup_alpha": 10.0,
    "noise": False,
    "label_smooth": 0.0,
    "n_frames": 10,
    "image_size": 224,
    "frame_index": -1,
    "frame_source": "auto",
    "audio_source": "auto",
    "audio_channel": 0,
    "image_interpolation": "bilinear",
    "features_on_device": False,
    "multi_frame": False,
    "on_bad_sample": "raise",
    "video_threads": 1,
    "frame_segments": False,
    "clip_length": 1024,
    "frame_span_s": 10.0,
}

_CHOICES = {
    "frame_source": ("auto", "extracted", "video"),
    "audio_source": ("auto", "wav", "video"),
    "on_bad_sample": ("raise", "skip"),
}

_TRAIN_ONLY = {"freqm": 0, "timem": 0, "mixup": 0.0, "noise": False, "label_smooth": 0.0}

#: Marker returned in place of a sample dropped by ``on_bad_sample: skip``;
#: :func:`collate_av` removes it from the batch. ``position`` is where a sample read
#: from shards lay (``shard/key``, see :mod:`speechbrain_cavmae.data.shards`).
SkippedSample = namedtuple("SkippedSample", ["id", "path", "reason", "position"],
                           defaults=[None])


#: Top-level hparams that are also keys of the data configuration (the same names as in
#: :data:`DEFAULT_CONFIG`); the yaml's ``data_config:`` dict may set any key.
HPARAMS_KEYS = (
    "sample_rate", "audio_length", "n_mels", "dataset_mean", "dataset_std", "freqm", "timem",
    "mixup", "noise", "label_smooth", "n_frames", "image_size", "features_on_device",
    "on_bad_sample", "frame_source", "audio_source", "frame_segments", "clip_length",
    "frame_span_s",
)


def hparams_config(hparams):
    """The data configuration that ``hparams`` (yaml + overrides; a dict or a namespace)
    give: the one route from a recipe's hparams to the dataset, the on-device fbank and
    the model folder.

    Each key of :data:`HPARAMS_KEYS` set at top level, then the ``data_config:`` dict (any
    other setting, e.g. ``mixup_alpha``, ``audio_channel``; it wins on a clash);
    ``multi_frame`` off. Defaults are :func:`resolve_config`'s.

    Example
    -------
    >>> hparams_config({"audio_length": 512, "data_config": {"mixup_alpha": 5.0}})
    {'audio_length': 512, 'mixup_alpha': 5.0, 'multi_frame': False}
    """
    values = hparams if isinstance(hparams, dict) else vars(hparams)
    cfg = {key: values[key] for key in HPARAMS_KEYS if values.get(key) is not None}
    cfg.update(values.get("data_config") or {})
    cfg["multi_frame"] = False
    return cfg


def resolve_config(config=None, train=True):
    """Defaults + ``config``; train-only augmentations zeroed for eval."""
    cfg = dict(DEFAULT_CONFIG)
    unknown = set(config or {}) - set(cfg)
    if unknown:
        raise ValueError(f"unknown data config key(s): {sorted(unknown)}")
    cfg.update(config or {})
    for key, allowed in _CHOICES.items():
        if cfg[key] not in allowed:
            raise ValueError(f"config {key}={cfg[key]!r}; expected one of {allowed}")
    if not 0 <= cfg["frame_index"] < cfg["n_frames"] and cfg["frame_index"] != -1:
        raise ValueError(f"config frame_index={cfg['frame_index']} is not one of the "
                         f"n_frames={cfg['n_frames']} frames (-1: the middle one)")
    if not (isinstance(cfg["clip_length"], int) and cfg["clip_length"] >= 1):
        raise ValueError(f"config clip_length={cfg['clip_length']!r}; expected a positive "
                         "number of fbank frames")
    if not cfg["frame_span_s"] > 0:
        raise ValueError(f"config frame_span_s={cfg['frame_span_s']!r}; expected seconds > 0")
    if cfg["frame_segments"]:
        if cfg["audio_length"] > cfg["clip_length"]:
            raise ValueError(
                f"config audio_length={cfg['audio_length']} (the segment) is longer than "
                f"clip_length={cfg['clip_length']}; set clip_length to at least audio_length")
        if cfg["features_on_device"]:
            raise ValueError("config frame_segments needs the fbank computed in the data "
                             "loader: set features_on_device: False")
    if not train:
        cfg.update(_TRAIN_ONLY)
    return cfg


class BadSampleCounter:
    """Counts samples dropped by the skip policy, across DataLoader workers.

    The count lives in shared memory, so workers forked (or spawned) by a
    ``DataLoader`` update the parent's value. Call :meth:`log_epoch` at the
    end of each epoch.

    Example
    -------
    >>> c = BadSampleCounter()
    >>> c.record(BadSampleError("x.wav", "file not found"))
    >>> c.count
    1
    >>> c.log_epoch(1)
    1
    >>> c.count
    0
    """

    def __init__(self):
        self._count = multiprocessing.Value("i", 0)

    def record(self, error):
        with self._count.get_lock():
            self._count.value += 1
        logger.warning("skipping bad sample: %s", error)

    @property
    def count(self):
        return self._count.value

    def reset(self):
        with self._count.get_lock():
            self._count.value = 0

    def log_epoch(self, epoch=None, stage="train"):
        """Log how many samples were skipped since the last call (a warning, only when some
        were: ``"train epoch 3: skipped 2 bad sample(s)"``, ``"test: ..."`` without an
        epoch); reset; return the count."""
        with self._count.get_lock():
            count = self._count.value
            self._count.value = 0
        if count:
            where = stage if epoch is None else f"{stage} epoch {epoch}"
            logger.warning("%s: skipped %d bad sample(s)", where, count)
        return count


def _is_container(path):
    return path is not None and os.path.splitext(path)[1].lower() not in SOUNDFILE_EXTS


class AVSampleLoader:
    """Loads and transforms one sample (audio, frame(s), targets).

    Used by :class:`AVDataset` as its dynamic item; see the module docstring
    for the configuration.
    """

    def __init__(self, data, config, train, label_table=None, manifest_path=None):
        self.data = data
        self.ids = list(data)
        self.cfg = config
        self.train = train
        self.table = label_table
        self.manifest_path = manifest_path or "<manifest>"
        self.transform = ImageTransform(config["image_size"])
        self.video_transform = ImageTransform(
            config["image_size"], interpolation=config["image_interpolation"]
        )

    # -- paths -----------------------------------------------------------
    def audio_path(self, sid):
        entry = self.data[sid]
        source = self.cfg["audio_source"]
        wav, video = entry.get("wav"), entry.get("video")
        if source == "wav":
            path = wav
        elif source == "video":
            path = video or (wav if _is_container(wav) else None)
        else:
            path = wav or video
        if path is None:
            raise BadSampleError(self.manifest_path, f"no audio file for audio_source={source!r}", sid)
        return path

    def frame_source(self, sid):
        """('extracted', video_path_dir) or ('video', video_file)."""
        entry = self.data[sid]
        source = self.cfg["frame_source"]
        folder = entry.get("video_path")
        video = entry.get("video") or (entry.get("wav") if _is_container(entry.get("wav")) else None)
        if source == "extracted" or (
            source == "auto" and folder and os.path.isdir(os.path.join(folder, "frame_0"))
        ):
            if not folder:
                raise BadSampleError(self.manifest_path, "no 'video_path' for extracted frames", sid)
            return "extracted", folder
        if video is None:
            raise BadSampleError(
                self.manifest_path, f"no video file or extracted frames (frame_source={source!r})", sid
            )
        return "video", video

    # -- loading ---------------------------------------------------------
    def audio_input(self, sid):
        """(what :func:`~speechbrain_cavmae.data.audio.load_audio` reads, its name in
        errors): here the audio file, twice; a subclass may give bytes."""
        path = self.audio_path(sid)
        return path, path

    def extracted_frame(self, sid, where, k):
        """Extracted frame ``k`` (an RGB ``PIL.Image``) of ``frame_source``'s ``where``."""
        return load_extracted_frame(where, self.data[sid]["video_id"], k)

    def fbank_length(self):
        """Fbank frames computed from the clip's start: ``clip_length`` with frame segments
        (the segments are cut from them), otherwise ``audio_length``."""
        return self.cfg["clip_length" if self.cfg["frame_segments"] else "audio_length"]

    def samples_used(self):
        """Waveform samples that the :meth:`fbank_length` frames cover (from the start)."""
        rate = self.cfg["sample_rate"]
        return (self.fbank_length() - 1) * int(0.010 * rate) + int(0.025 * rate)

    def segment(self, k):
        """``(start, end)`` fbank frames of frame ``k``'s audio segment (frame segments)."""
        cfg = self.cfg
        return frame_segment(k, cfg["n_frames"], cfg["clip_length"], cfg["audio_length"])

    def waveform(self, sid, whole=False):
        """The waveform's first :meth:`samples_used` samples (only those are read), or all
        of it with ``whole``."""
        source, name = self.audio_input(sid)
        wav = load_audio(source, self.cfg["sample_rate"], self.cfg["audio_channel"], name=name,
                         max_samples=None if whole else self.samples_used())
        if wav.numel() < int(0.025 * self.cfg["sample_rate"]):
            raise BadSampleError(
                name, f"clip of {wav.numel()} samples is shorter than one 25 ms frame", sid
            )
        return wav

    def frames(self, sid, positions):
        """Transformed frames [len(positions), 3, R, R]."""
        kind, where = self.frame_source(sid)
        if kind == "extracted":
            images = [self.extracted_frame(sid, where, k) for k in positions]
            return torch.stack([self.transform(img) for img in images])
        raw = load_video_frames(
            where, self.cfg["n_frames"], indices=positions, span_s=self.cfg["frame_span_s"],
            num_threads=self.cfg["video_threads"]
        )
        return torch.stack([self.video_transform(f) for f in raw])

    def pick_frame(self):
        n = self.cfg["n_frames"]
        if self.train:
            return int(torch.randint(0, n, ()))
        k = self.cfg["frame_index"]
        return middle_frame(n) if k < 0 else k

    def check_labels(self, sid):
        if self.table is None:
            return
        for label in self.data[sid]["labels"]:
            if label not in self.table:
                raise BadSampleError(
                    self.manifest_path, f"label {label!r} not in label CSV {self.table.path}", sid
                )

    def draw_partner(self):
        """Id of a random mixup partner: any sample of the data set."""
        return self.ids[int(torch.randint(0, len(self.ids), ()))]

    def _partner(self, sid, k):
        """Random mixup partner (id, waveform, frame) or None; with frame segments its
        frame is ``k``, the sample's own, so that the mixed segment still matches it."""
        for _ in range(3):
            other = self.draw_partner()
            try:
                self.check_labels(other)
                k2 = k if self.cfg["frame_segments"] else self.pick_frame()
                return other, self.waveform(other), self.frames(other, [k2])[0]
            except BadSampleError as err:
                if self.cfg["on_bad_sample"] == "raise":
                    raise err.with_id(other) from None
                logger.warning("mixup partner unusable, drawing another: %s", err.with_id(other))
        return None

    def __call__(self, sid):
        cfg = self.cfg
        self.check_labels(sid)
        wav = self.waveform(sid)
        multi = cfg["multi_frame"] and not self.train
        k = self.pick_frame()
        if multi:
            frames = self.frames(sid, list(range(cfg["n_frames"])))
            frame = frames[k]
        else:
            frames = None
            frame = self.frames(sid, [k])[0]
        labels = self.data[sid]["labels"]
        mix = None
        if self.train and cfg["mixup"] > 0 and float(torch.rand(())) < cfg["mixup"]:
            mix = self._partner(sid, k)
        if mix is not None:
            other, wav2, frame2 = mix
            lam = augment.sample_mix_lambda(cfg["mixup_alpha"])
            wav = augment.mix_waveforms(wav, wav2, lam)
            frame = lam * frame + (1.0 - lam) * frame2
            targets = None
            if self.table is not None:
                targets = augment.make_targets(
                    self.table, labels, cfg["label_smooth"], self.data[other]["labels"], lam
                )
        elif self.table is not None:
            targets = augment.make_targets(self.table, labels, cfg["label_smooth"])
        else:
            targets = None

        out = {"frame": frame}
        if frames is not None:
            out["frames"] = frames
        if targets is not None:
            out["labels"] = targets
        if cfg["features_on_device"]:
            out["wav"] = wav[:self.samples_used()]
            return out
        feats = self.clip_fbank(wav, sid)
        out["fbank"] = self.finish_fbank(self.cut(feats, k))
        if multi and cfg["frame_segments"]:
            out["fbanks"] = torch.stack(
                [self.finish_fbank(self.cut(feats, j)) for j in range(cfg["n_frames"])])
        return out

    def clip_fbank(self, wav, sid=None):
        """Unnormalised fbank [:meth:`fbank_length`, n_mels] of the waveform."""
        cfg = self.cfg
        try:
            return compute_fbank(
                wav, cfg["sample_rate"], cfg["n_mels"], self.fbank_length(), normalize=False
            )
        except ValueError as exc:
            raise BadSampleError(self.audio_input(sid)[1], str(exc), sid) from exc

    def cut(self, feats, k):
        """Frame ``k``'s segment of the clip's fbank (frame segments), else all of it."""
        if not self.cfg["frame_segments"]:
            return feats
        start, end = self.segment(k)
        return feats[start:end]

    def fbank(self, wav, sid=None, k=None):
        """Features [audio_length, n_mels] of the waveform (with frame segments, frame
        ``k``'s segment, by default the frame :meth:`pick_frame` picks): train-time
        SpecAugment and noise, normalisation."""
        feats = self.clip_fbank(wav, sid)
        if self.cfg["frame_segments"] and k is None:
            k = self.pick_frame()
        return self.finish_fbank(self.cut(feats, k))

    def finish_fbank(self, feats):
        """SpecAugment (train), normalisation, noise (train) of fbank frames."""
        cfg = self.cfg
        if self.train:
            feats = augment.spec_augment(feats, cfg["freqm"], cfg["timem"])
        if not cfg["skip_norm"]:
            feats = normalize_fbank(feats, cfg["dataset_mean"], cfg["dataset_std"])
        if self.train and cfg["noise"]:
            feats = augment.noise_and_roll(feats)
        return feats


class _Getter:
    """Picklable ``lambda sample: sample[key]``."""

    def __init__(self, key):
        self.key = key

    def __call__(self, sample):
        return sample[self.key]


class AVDataset(DynamicItemDataset):
    """``DynamicItemDataset`` applying the bad-sample policy.

    With ``on_bad_sample='skip'`` a sample raising :class:`BadSampleError`
    is returned as a :class:`SkippedSample` marker (counted in
    ``self.bad_samples`` and logged) which :func:`collate_av` drops; with
    ``'raise'`` the error propagates, naming the file and the problem.
    """

    def __init__(self, data, loader, output_keys, on_bad_sample="raise", counter=None):
        static = {
            sid: {"video_id": e["video_id"], "label_ids": list(e["labels"])} for sid, e in data.items()
        }
        super().__init__(static)
        self.loader = loader
        self.on_bad_sample = on_bad_sample
        self.bad_samples = counter if counter is not None else BadSampleCounter()
        # Plain (not generator) dynamic items: SpeechBrain's generator items
        # keep state that an exception mid-sample would leave behind.
        self.add_dynamic_item(loader, takes=["id"], provides="av_sample")
        for key in output_keys:
            if key != "id":
                self.add_dynamic_item(_Getter(key), takes=["av_sample"], provides=key)
        self.set_output_keys(list(output_keys))

    @property
    def label_table(self):
        return self.loader.table

    def __getitem__(self, index):
        try:
            return super().__getitem__(index)
        except BadSampleError as err:
            return bad_sample(err, self.data_ids[index], self.on_bad_sample, self.bad_samples)


def bad_sample(err, sid, policy, counter, position=None):
    """Apply the bad-sample policy to ``err`` raised by sample ``sid``: raise it (tagged
    with the id) for ``'raise'``; for ``'skip'`` count and log it and return the
    :class:`SkippedSample` marker."""
    if err.sample_id is None:
        err = err.with_id(sid)
    if policy == "skip":
        counter.record(err)
        return SkippedSample(sid, err.path, err.reason, position)
    raise err from None


def output_keys(cfg, train, table):
    """Keys of the items of a split (see the module docstring)."""
    keys = ["id", "wav" if cfg["features_on_device"] else "fbank", "frame"]
    if cfg["multi_frame"] and not train:
        keys.append("frames")
        if cfg["frame_segments"]:
            keys.append("fbanks")
    if table is not None:
        keys.append("labels")
    return keys


def label_table(label_csv):
    """A :class:`LabelTable` from a CSV path (or the table itself, or None)."""
    if label_csv is None or isinstance(label_csv, LabelTable):
        return label_csv
    return LabelTable.from_csv(label_csv)


def build_dataset(manifest_path, label_csv=None, config=None, train=True, counter=None,
                  require_labels=None):
    """Build the CAV-MAE dataset for one split.

    Arguments
    ---------
    manifest_path : str
        Original CAV-MAE JSON or SpeechBrain JSON/CSV manifest.
    label_csv : str or LabelTable, optional
        ``index,mid,display_name`` table; without it no ``labels`` output.
    config : dict, optional
        Overrides of :data:`DEFAULT_CONFIG`.
    train : bool
        Training mode (random frame, augmentation) or evaluation.
    counter : BadSampleCounter, optional
        Shared counter for skipped samples.
    require_labels : bool, optional
        Every entry must have at least one label (default: when a label table is given;
        the recipes require them for fine-tuning only).

    Returns
    -------
    AVDataset
        A ``speechbrain.dataio.dataset.DynamicItemDataset``.

    Raises
    ------
    ManifestError
        An unreadable or empty manifest, or, with a label table, entries without labels
        (a misspelled ``labels`` field reads as none).
    """
    cfg = resolve_config(config, train)
    data = read_manifest(manifest_path)
    if not data:
        raise ManifestError(manifest_path, "manifest has no entries")
    table = label_table(label_csv)
    if table is not None if require_labels is None else require_labels:
        check_labelled(data, os.fspath(manifest_path))
    loader = AVSampleLoader(data, cfg, train, table, os.fspath(manifest_path))
    keys = output_keys(cfg, train, table)
    dataset = AVDataset(data, loader, keys, cfg["on_bad_sample"], counter)
    logger.info(
        "%s: %d samples, %s mode, frame_source=%s, audio_source=%s",
        manifest_path, len(dataset), "train" if train else "eval",
        cfg["frame_source"], cfg["audio_source"],
    )
    return dataset


class AVBatch(PaddedBatch):
    """``PaddedBatch`` of the good examples; ``.skipped`` lists the dropped ones."""

    def __init__(self, examples, *args, **kwargs):
        good = [e for e in examples if not isinstance(e, SkippedSample)]
        if not good:
            raise ValueError("every example of the batch was skipped")
        super().__init__(good, *args, **kwargs)
        self.skipped = [e for e in examples if isinstance(e, SkippedSample)]


def collate_av(examples):
    """Collate function for :class:`AVDataset`.

    Returns an :class:`AVBatch` (``wav`` padded with relative lengths as
    usual in SpeechBrain), or ``None`` when every example of the batch was
    skipped by the bad-sample policy; the training loop should skip such a
    batch.
    """
    if all(isinstance(e, SkippedSample) for e in examples):
        return None
    return AVBatch(examples)


__all__ = [
    "DEFAULT_CONFIG",
    "AVBatch",
    "AVDataset",
    "AVSampleLoader",
    "BadSampleCounter",
    "SkippedSample",
    "build_dataset",
    "collate_av",
    "hparams_config",
    "resolve_config",
    "extracted_frame_path",
]
