"""Ready-to-use CAV-MAE inference in SpeechBrain's ``Pretrained`` interface.

:class:`AudioVisualClassifier` loads a model folder written by
``cavmae convert`` (or a fine-tuning run that writes the same
``hyperparams.yaml`` / ``model.ckpt`` / ``label_encoder.txt`` layout) and classifies or embeds
clips:

* video files (mp4, mkv, ...): the audio track and ``n_frames`` (10) frames spread over the
  first 10 s, in ``mode`` (multimodal by default): the audio is encoded once, the frames run
  as one batch, and the scores of the frames (those of running the model once per frame)
  are averaged, as the original multi-frame evaluation;
* audio files (wav, flac, ...): ``audio_only_mode`` (``missingaudioonly`` for a model
  fine-tuned multimodally, ``audioonly`` for an audio model);
* videos without sound: ``video_only_mode``.

Files are read with the evaluation dataset's own code
(:class:`~speechbrain_cavmae.data.dataset.AVSampleLoader`) configured from the model
folder: the audio channel it records (channel 0 by default, as the original's
``sox remix 1``), resampled to ``sample_rate``, turned into the Kaldi fbank of the original,
cropped or zero-padded to ``audio_length`` frames (1024 = 10.24 s) before the dataset
normalisation (``dataset_mean`` / ``dataset_std``); frames resized with the folder's filter, as
the original evaluation: a 5 s clip is padded, a 30 s clip is cropped to its first 10.24 s. Scores are ``score_activation`` (sigmoid for multi-label models, softmax
otherwise) of the logits.

``classify_file`` / ``classify_batch`` follow SpeechBrain's ``EncoderClassifier``:
``(out_prob, score, index, text_lab)`` with ``out_prob`` the log of the scores (the
log-posteriors of a softmax (CE) model; per-class log-probabilities of a sigmoid (BCE)
multi-label model), ``score`` its maximum, ``index`` the best class and ``text_lab`` its
label. ``rank_file`` gives the top-k classes as ``Prediction(label, score, index)`` with
the scores themselves.

Example
-------
>>> from speechbrain_cavmae.inference import AudioVisualClassifier  # doctest: +SKIP
>>> model = AudioVisualClassifier.from_hparams(source="cavmae-as", savedir="tmp")  # doctest: +SKIP
>>> out_prob, score, index, text_lab = model.classify_file("clip.mp4")  # doctest: +SKIP
>>> model.rank_file("clip.mp4", top_k=3)  # doctest: +SKIP
[Prediction(label='Speech', score=0.93, index=0), ...]

Authors
 * speechbrain-cavmae contributors 2026
"""

import logging
import math
import os
from collections import namedtuple

import torch
from speechbrain.inference.interfaces import Pretrained

from speechbrain_cavmae.model.modes import get_mode
from speechbrain_cavmae.model.tasks import ACTIVATIONS, scores
from speechbrain_cavmae.data.audio import SOUNDFILE_EXTS, audio_info
from speechbrain_cavmae.data.dataset import AVSampleLoader, resolve_config
from speechbrain_cavmae.data.errors import BadSampleError
from speechbrain_cavmae.data.frames import ImageTransform, sample_frame_indices, video_info
from speechbrain_cavmae.data.fbank import DEFAULT_MEAN, DEFAULT_STD, KaldiFbank, num_fbank_frames
from speechbrain_cavmae.checkpoints.loader import HPARAMS_FILE, model_source
from speechbrain_cavmae.checkpoints.loader import yaml_declares as _yaml_declares
from speechbrain_cavmae.checkpoints import input_config
from speechbrain_cavmae.checkpoints.trust import check_hparams_file

logger = logging.getLogger(__name__)

#: One ranked class: label, score and class index.
Prediction = namedtuple("Prediction", ["label", "score", "index"])

#: Hop of the fbank frames, in seconds (``audio_length`` frames hold ``audio_length *
#: FRAME_SHIFT_S`` seconds of audio).
FRAME_SHIFT_S = 0.010

#: Sample id of a file read by :meth:`AudioVisualClassifier.load_clip`.
CLIP_ID = "clip"

def probe_streams(path):
    """``(has_audio, has_video)`` of a media file.

    Audio file extensions (wav, flac, ...) are audio-only; containers are opened with PyAV.

    Raises
    ------
    BadSampleError
        Missing or unreadable file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise BadSampleError(path, "file not found")
    if os.path.splitext(path)[1].lower() in SOUNDFILE_EXTS:
        return True, False
    from .data.containers import open_container

    try:
        with open_container(path) as container:
            return bool(container.streams.audio), bool(container.streams.video)
    except Exception as exc:
        raise BadSampleError(path, f"cannot open container ({exc})") from exc


def _fetch_hparams(source, hparams_file, kwargs):
    """Local path of a hub ``source``'s hyperparameters file, fetched as ``from_hparams``
    does."""
    from speechbrain.inference import interfaces  # the fetch that from_hparams itself uses

    options = {k: kwargs[k] for k in ("savedir", "local_strategy", "fetch_config")
               if k in kwargs}
    return interfaces.fetch(filename=hparams_file, source=source, save_filename=None,
                            **options)


def _local_fetch_config(kwargs):
    """SpeechBrain's fetch options for a local folder: no network, and the ``savedir``
    links made afresh (a ``savedir`` used before for another folder would otherwise give
    that folder's files)."""
    import dataclasses

    from speechbrain.utils.fetching import FetchConfig

    given = kwargs.get("fetch_config") or FetchConfig()
    return dataclasses.replace(given, overwrite=True, allow_network=False)


class AudioVisualClassifier(Pretrained):
    """Audio-visual event classification and embedding with a CAV-MAE model.

    The hyperparameters file must define ``modules`` with ``model`` (a
    :class:`~speechbrain_cavmae.CAVMAEClassifier`, or a :class:`~speechbrain_cavmae.CAVMAE`
    for embeddings only) and optionally ``compute_features`` (a
    :class:`~speechbrain_cavmae.data.fbank.KaldiFbank`), plus the settings ``sample_rate``,
    ``n_frames``, ``image_size``, ``mode``, ``audio_only_mode``, ``video_only_mode``,
    ``score_activation`` and a ``label_encoder`` (see :mod:`speechbrain_cavmae.tools.convert`).

    Arguments
    ---------
    See ``speechbrain.inference.interfaces.Pretrained``; build it with
    :meth:`from_hparams`.
    """

    MODULES_NEEDED = ["model"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        hp = self.hparams
        model = self.mods.model
        self.sample_rate = getattr(hp, "sample_rate", 16000)
        self.n_frames = getattr(hp, "n_frames", 10)
        self.image_size = getattr(hp, "image_size", model.encoder.patch_embed_v.img_size[0])
        self.image_transform = ImageTransform(
            self.image_size, interpolation=getattr(hp, "image_interpolation", "bilinear")
        )
        self.score_activation = getattr(hp, "score_activation", "softmax")
        if self.score_activation not in ACTIVATIONS:
            raise ValueError(f"score_activation={self.score_activation!r}: use sigmoid or softmax")
        if "compute_features" not in self.mods:
            self.mods.compute_features = KaldiFbank(
                sample_rate=self.sample_rate,
                n_mels=getattr(hp, "n_mels", 128),
                audio_length=getattr(hp, "audio_length", model.encoder.audio_length),
                dataset_mean=getattr(hp, "dataset_mean", DEFAULT_MEAN),
                dataset_std=getattr(hp, "dataset_std", DEFAULT_STD),
            ).to(self.device)
        self.label_encoder = getattr(hp, "label_encoder", None)
        if self.is_classifier and self.label_encoder is not None and len(self.label_encoder):
            if len(self.label_encoder) != model.num_classes:
                raise ValueError(
                    f"label encoder has {len(self.label_encoder)} labels, the model "
                    f"{model.num_classes} classes"
                )
            self.label_encoder.expect_len(model.num_classes)

    @classmethod
    def from_hparams(cls, source, hparams_file="hyperparams.yaml", overrides=None,
                     trust_remote_code=False, num_heads=None, **kwargs):
        """Load from a model folder, a weights file, or a model-hub id.

        A path that exists is loaded locally, never from the hub
        (:func:`~speechbrain_cavmae.checkpoints.loader.model_source`): a model folder (or a
        recipe's output folder, standing for its ``model/``) with its yaml's
        ``pretrained_path`` (``.`` in the folders this package writes) set to the folder,
        so that it can be moved freely, and its files linked into ``savedir`` afresh; a
        weights file (``.pth``, ``.ckpt``) or a SpeechBrain checkpoint folder through
        :meth:`from_weights`; a folder written by ``cavmae export``, run in ONNX Runtime
        (:mod:`speechbrain_cavmae.export.runtime`); anything else that exists (a wav...)
        is a ``NotAModelError``.
        A path that does not exist is a ``FileNotFoundError``, unless it has the shape of a
        model-hub id (``"org/cavmae-as"``) or is a URL: then it goes to SpeechBrain's own
        fetching, for ``hyperparams.yaml`` and, through ``pretrained_path``, for
        ``model.ckpt`` and ``label_encoder.txt`` (a model folder uploaded as it is).

        Arguments
        ---------
        source : str
            Model folder, weights file, hub id or URL.
        hparams_file : str
            Name of the hyperparameters file in ``source``.
        overrides : dict, optional
            HyperPyYAML overrides.
        trust_remote_code : bool
            The yaml is checked before it is loaded: unless this is ``True`` it must
            conform to the model-folder schema (:mod:`speechbrain_cavmae.checkpoints.trust`;
            ``UntrustedCodeError`` otherwise). Set it only for folders you trust: their
            yaml can run any code.
        num_heads : int, optional
            Attention heads of a weights file whose width is not the released 768 (a
            model folder records them).
        **kwargs
            Passed to ``Pretrained.from_hparams`` (``savedir``, ``run_opts``...).
        """
        overrides = dict(overrides or {})
        source = os.fspath(source) if isinstance(source, os.PathLike) else source
        if not isinstance(source, str) or "://" in source:  # FetchSource, URL
            kind, where = "hub", source
        elif hparams_file != HPARAMS_FILE and os.path.isdir(source):
            kind, where = "folder", source
        else:
            kind, where = model_source(source, hub=True)
        if kind == "export":
            from speechbrain_cavmae.export.runtime import exported_classifier

            return exported_classifier(cls, where, run_opts=kwargs.get("run_opts"))
        if kind in ("weights", "checkpoint_dir"):
            return cls.from_weights(where, run_opts=kwargs.get("run_opts"),
                                    num_heads=num_heads)
        if num_heads is not None:
            raise ValueError(f"{source}: num_heads is for weights files; a model folder "
                             "records its heads: drop the argument")
        if kind == "folder":
            if where != source:
                logger.info("%s: loading the model folder %s", source, where)
            source = os.path.abspath(where)
            path = os.path.join(source, hparams_file)
            if "pretrained_path" not in overrides and _yaml_declares(path, "pretrained_path"):
                overrides["pretrained_path"] = source
            kwargs["fetch_config"] = _local_fetch_config(kwargs)
        else:  # a hub id: fetched by SpeechBrain, for the yaml and, through
            if isinstance(source, str):  # pretrained_path, the files
                overrides.setdefault("pretrained_path", source)
            path = _fetch_hparams(source, hparams_file, kwargs)
        root = source if isinstance(source, str) else str(getattr(source, "path", source))
        check_hparams_file(path, root, overrides, trust_remote_code)
        return super().from_hparams(source, hparams_file=hparams_file, overrides=overrides,
                                    **kwargs)

    @classmethod
    def from_weights(cls, path, run_opts=None, num_heads=None):
        """Load a weights file (an original CAV-MAE ``.pth``, a recipe's ``finetuned.pth``,
        a checkpoint folder's weights) through the one loader, with the settings a folder
        converted from it without options records (``cavmae convert``): the model's own
        sizes and mode, AudioSet's fbank statistics, classes named ``class_<i>``. Convert
        it (``--label_csv``, ``--dataset_mean``...) to record anything else.

        Arguments
        ---------
        path : str
            The weights file.
        run_opts : dict, optional
            As ``Pretrained`` (``device``...).
        num_heads : int, optional
            Attention heads, for widths other than the released 768.
        """
        from speechbrain.dataio.encoder import CategoricalEncoder

        from speechbrain_cavmae.checkpoints import YamlRef, load, model_config, plain_yaml
        from speechbrain_cavmae.checkpoints.model_folder import (
            hparams_text,
            label_names,
            resolve_activation,
        )

        model = load(path, num_heads=num_heads).model
        cfg = model_config(model)
        kind = cfg["kind"]
        activation = (resolve_activation("auto", cfg["num_classes"])
                      if kind == "classifier" else "softmax")
        settings = plain_yaml(hparams_text(
            cfg, kind, source=path, mode=cfg.get("mode", "multimodal"),
            score_activation=activation, has_labels=kind == "classifier"))
        settings = {k: v for k, v in settings.items()
                    if not isinstance(v, (dict, list, YamlRef))}  # the scalars
        built = ("pretrained_path", "compute_features", "model", "label_encoder", "modules",
                 "pretrainer")
        hparams = {k: v for k, v in settings.items() if k not in built}
        if kind == "classifier":
            hparams["label_encoder"] = CategoricalEncoder()
            hparams["label_encoder"].update_from_iterable(label_names(cfg["num_classes"])[0])
        logger.info("%s: a weights file: %s scores, classes named class_<i>, AudioSet fbank "
                    "statistics (cavmae convert records others)", path, activation)
        return cls(modules={"model": model}, hparams=hparams, run_opts=run_opts)

    # ------------------------------------------------------------------ helpers
    @property
    def is_classifier(self):
        """Whether the model has a classification head."""
        return hasattr(self.mods.model, "head")

    def labels(self, indices):
        """Class names of ``indices`` (the index as a string when no names are known)."""
        enc = self.label_encoder
        if enc is not None and len(enc):
            return [enc.ind2lab[int(i)] for i in indices]
        return [str(int(i)) for i in indices]

    def compute_fbank(self, wavs, wav_lens=None):
        """Waveforms ``[batch, samples]`` (16 kHz) -> fbank ``[batch, audio_length, n_mels]``."""
        wavs = wavs.to(self.device).float()
        if wav_lens is not None:
            wav_lens = wav_lens.to(self.device)
        return self.mods.compute_features(wavs, wav_lens)

    def transform_frames(self, frames):
        """uint8 frames ``[n, 3, H, W]`` (or HWC arrays) -> ``[n, 3, image_size, image_size]``."""
        return torch.stack([self.image_transform(frame) for frame in frames])

    def data_config(self):
        """The evaluation data configuration of this model (its folder's input pipeline:
        sample rate, audio channel, fbank frames, mel bins, mean/std, frames per clip,
        image size and resize filter), as ``speechbrain_cavmae.data.dataset`` takes it."""
        enc = self.mods.model.encoder
        cfg = {"audio_length": enc.audio_length, "n_mels": enc.patch_embed_a.n_mels,
               "image_size": self.image_size, "sample_rate": self.sample_rate,
               "n_frames": self.n_frames}
        cfg.update(input_config(self.hparams))
        cfg.update(multi_frame=True, frame_source="video", audio_source="auto")
        return cfg

    def load_clip(self, path):
        """Read a media file into model inputs with the evaluation dataset's own code
        (:class:`~speechbrain_cavmae.data.dataset.AVSampleLoader` configured by
        :meth:`data_config`), so that a file is fed exactly as in evaluation.

        Returns
        -------
        tuple
            ``(fbank [audio_length, n_mels] or None,
            frames [n_frames, 3, image_size, image_size] or None)``.
        """
        has_audio, has_video = probe_streams(path)
        if not has_audio and not has_video:
            raise BadSampleError(path, "no audio or video stream")
        fbank, frames, _ = self._read_streams(path, has_audio, has_video)
        return fbank, frames

    def _read_streams(self, path, audio, video):
        """``(fbank or None, frames or None, facts)``: the streams asked for, read as
        :meth:`load_clip` reads them, and what :meth:`input_facts` says of them."""
        cfg = resolve_config(self.data_config(), train=False)
        entry = {"video_id": CLIP_ID, "wav": os.fspath(path), "labels": []}
        if video:
            entry["video"] = os.fspath(path)
        loader = AVSampleLoader({CLIP_ID: entry}, cfg, train=False, manifest_path=path)
        fbank = frames = samples = info = None
        if audio:
            wav = loader.waveform(CLIP_ID)
            # only the window the fbank uses is read: the track's length is its header's
            declared = audio_info(path)[2]
            samples = max(wav.numel(), round((declared or 0) * self.sample_rate))
            fbank = loader.fbank(wav, CLIP_ID)
        if video:
            frames = loader.frames(CLIP_ID, list(range(cfg["n_frames"])))
            info = video_info(path)[:2]
        return fbank, frames, self.input_facts(samples, info)

    def input_facts(self, audio_samples=None, video=None):
        """What of a file the model sees: its audio track's length, how much of it the
        ``audio_length`` fbank frames hold (longer tracks are cut, shorter ones padded),
        and the times of the frames taken from its video (spread over the first 10 s).

        Arguments
        ---------
        audio_samples : int, optional
            Samples of the audio track at ``sample_rate`` (None: no audio read).
        video : tuple, optional
            ``(frame count, frames per second)`` of the video track (None: no frames read).

        Returns
        -------
        dict
            ``audio_seconds``, ``audio_seconds_used``, ``audio_cut``, ``audio_padded``,
            ``video_seconds``, ``frame_seconds`` (list), ``frames_cut``; None for a stream
            not read.
        """
        facts = dict.fromkeys(("audio_seconds", "audio_seconds_used", "audio_cut",
                               "audio_padded", "video_seconds", "frame_seconds", "frames_cut"))
        if audio_samples is not None:
            rate = self.sample_rate
            length = self.mods.model.encoder.audio_length
            n = num_fbank_frames(audio_samples, rate)
            seconds = audio_samples / rate
            facts.update(audio_seconds=round(seconds, 3),
                         audio_seconds_used=round(min(seconds, length * FRAME_SHIFT_S), 3),
                         audio_cut=n > length, audio_padded=n < length)
        if video is not None:
            count, fps = video
            taken = sample_frame_indices(count, fps, self.n_frames)
            # the same spacing over the whole video: different when the video is longer
            whole = sample_frame_indices(count, fps, self.n_frames, span_s=(count + 1) / fps)
            facts.update(video_seconds=round(count / fps, 3),
                         frame_seconds=[round(k / fps, 3) for k in taken],
                         frames_cut=taken != whole)
        return facts

    def _resolve_mode(self, mode, has_audio, has_frames, source=None):
        """The mode to run: ``mode`` if given, else the hparams' ``mode`` (audio and
        frames), ``audio_only_mode`` (audio only) or ``video_only_mode`` (frames only).

        Arguments
        ---------
        mode : str or None
            Requested mode.
        has_audio, has_frames : bool
            Which inputs are available.
        source : str, optional
            File the inputs come from, named in the errors.

        Raises
        ------
        ValueError
            Unknown mode, a mode whose input is missing, or a single-modality input that
            the model's hparams do not allow (``audio_only_mode`` / ``video_only_mode``
            null).
        """
        hp = self.hparams
        where = f"{source}: " if source is not None else ""
        audio_note = " (the file has no audio stream)" if source is not None else ""
        video_note = " (the file has no video stream)" if source is not None else ""
        if mode is None:
            if has_audio and has_frames:
                mode = getattr(hp, "mode", "multimodal")
            elif has_audio:
                mode = getattr(hp, "audio_only_mode", "missingaudioonly")
                if mode is None:
                    raise ValueError(f"{where}this model cannot classify audio alone"
                                     f"{video_note}: audio_only_mode is null in its hyperparams")
            elif has_frames:
                mode = getattr(hp, "video_only_mode", "missingvideoonly")
                if mode is None:
                    raise ValueError(f"{where}this model cannot classify video alone"
                                     f"{audio_note}: video_only_mode is null in its hyperparams")
            else:
                raise ValueError("give audio, frames or both")
        try:
            uses = get_mode(mode)
        except ValueError as err:
            raise ValueError(f"{where}{err}") from None
        if uses.audio and not has_audio:
            raise ValueError(f"{where}mode {mode!r} needs audio{audio_note}")
        if uses.visual:
            if not has_frames:
                raise ValueError(f"{where}mode {mode!r} needs frames{video_note}")
        return mode

    def _activation(self, logits, log=False):
        """``score_activation`` of ``logits`` (its logarithm with ``log``)."""
        return scores(logits, self.score_activation, log=log)

    def _audio_input(self, audio, wav_lens):
        if audio is None:
            return None
        audio = audio.to(self.device)
        if audio.dim() == 1:
            audio = audio.unsqueeze(0)
        if audio.dim() == 2:
            return self.compute_fbank(audio, wav_lens)
        if audio.dim() == 3:
            return audio.float()
        raise ValueError(f"audio must be wavs [batch, samples] or fbank [batch, frames, "
                         f"n_mels], got {tuple(audio.shape)}")

    @staticmethod
    def _frames_input(frames, device):
        if frames is None:
            return None
        if frames.dim() == 4:
            frames = frames.unsqueeze(1)
        if frames.dim() != 5:
            raise ValueError(f"frames must be [batch, 3, H, W] or [batch, n, 3, H, W], got "
                             f"{tuple(frames.shape)}")
        return frames.to(device).float()

    # ------------------------------------------------------------------ batches
    def scores_batch(self, audio=None, frames=None, wav_lens=None, mode=None, log=False,
                     on_step=None):
        """Class scores ``[batch, classes]``.

        Each clip's audio is encoded once and its frames run as one batch; the scores are
        those of running the model on each frame in turn, averaged over the frames.

        Arguments
        ---------
        audio : torch.Tensor, optional
            Waveforms ``[batch, samples]`` at ``sample_rate`` or fbank
            ``[batch, frames, n_mels]`` already normalised.
        frames : torch.Tensor, optional
            Transformed frames ``[batch, 3, H, W]`` or ``[batch, n_frames, 3, H, W]``.
        wav_lens : torch.Tensor, optional
            Relative lengths of the waveforms.
        mode : str, optional
            One of ``MODES``; default from the hparams and the inputs given.
        log : bool
            Return the logarithm of the scores (computed in log space: a score too small
            for float32 keeps a finite log).
        on_step : callable, optional
            Called with the name of each part of the model run as it is done (see
            :meth:`steps`).

        Returns
        -------
        torch.Tensor
            ``score_activation`` of the logits, averaged over the frames (or its log).
        """
        if not self.is_classifier:
            raise RuntimeError(
                "this model has no classification head (a pretrained CAV-MAE): its "
                "embeddings come from cavmae embed --model FOLDER --manifest MANIFEST "
                "--output DIR (in Python: encode_batch / encode_file)")
        mode = self._resolve_mode(mode, audio is not None, frames is not None)
        uses = get_mode(mode)
        with torch.no_grad():
            fbank = self._audio_input(audio, wav_lens) if uses.audio else None
            frames = self._frames_input(frames, self.device) if uses.visual else None
            logits = self.mods.model.forward_frames(fbank, frames, mode=mode, on_step=on_step)
            scores = self._activation(logits, log)  # [batch, n, classes]
            if log:  # log of the mean score over the frames
                return torch.logsumexp(scores, dim=1) - math.log(scores.shape[1])
            return scores.mean(dim=1)

    @staticmethod
    def steps(mode):
        """The parts of classifying a file in ``mode``, in order, as ``on_step`` reports
        them: ``read`` (decoding), ``audio`` (the audio branch, once per clip), ``frames``
        (the visual branch over all the frames), ``join`` (the shared blocks and head,
        per frame).

        Example
        -------
        >>> AudioVisualClassifier.steps("multimodal"), AudioVisualClassifier.steps("audioonly")
        (('read', 'audio', 'frames', 'join'), ('read', 'audio', 'join'))
        """
        uses = get_mode(mode)
        return ("read",) + ("audio",) * uses.audio + ("frames",) * uses.visual + ("join",)

    def classify_batch(self, audio=None, frames=None, wav_lens=None, mode=None):
        """Classify a batch (see :meth:`scores_batch` for the arguments), with the return
        convention of SpeechBrain's ``EncoderClassifier.classify_batch``.

        Returns
        -------
        out_prob : torch.Tensor
            ``[batch, classes]``: the log of the scores (:meth:`scores_batch`): the
            log-posteriors of a softmax (CE) model, the per-class log-probabilities of a
            sigmoid (BCE, multi-label) model; ``out_prob.exp()`` gives the scores.
        score : torch.Tensor
            ``[batch]``: the best class' value of ``out_prob``.
        index : torch.Tensor
            ``[batch]``: the best class.
        text_lab : list of str
            The best class' label (its index as a string when the model has no labels).
        """
        out_prob = self.scores_batch(audio, frames, wav_lens, mode, log=True)
        score, index = out_prob.max(dim=-1)
        return out_prob, score, index, self.labels(index.tolist())

    def encode_batch(self, audio=None, frames=None, wav_lens=None):
        """Mean-pooled audio-only and visual-only embeddings.

        Returns
        -------
        tuple
            ``(audio [batch, dim] or None, visual [batch, dim] or None)``; the visual
            embedding is averaged over the frames. Audio padding is not masked (as the
            original).
        """
        enc = self.mods.model.encoder
        with torch.no_grad():
            a = v = None
            if audio is not None:
                a = enc.encode_audio(self._audio_input(audio, wav_lens)).mean(dim=1)
            if frames is not None:
                frames = self._frames_input(frames, self.device)
                batch, n = frames.shape[:2]
                v = enc.encode_visual(frames.flatten(0, 1)).mean(dim=1)
                v = v.reshape(batch, n, -1).mean(dim=1)
        return a, v

    def forward(self, audio=None, frames=None, wav_lens=None, mode=None):
        """Same as :meth:`classify_batch`."""
        return self.classify_batch(audio, frames, wav_lens, mode)

    # ------------------------------------------------------------------ files
    def file_mode(self, path, mode=None):
        """The mode a file is classified in: ``mode`` if given, else by the streams the
        file has (a video with sound: the hparams' ``mode``; an audio file:
        ``audio_only_mode``; a video without an audio stream: ``video_only_mode``).

        Raises
        ------
        ValueError, BadSampleError
            See :meth:`file_inputs`.
        """
        has_audio, has_video = probe_streams(path)
        if not has_audio and not has_video:
            raise BadSampleError(path, "no audio or video stream")
        return self._resolve_mode(mode, has_audio, has_video, source=path)

    def _file_inputs(self, path, mode=None):
        """:meth:`file_inputs` and the :meth:`input_facts` of what was read."""
        mode = self.file_mode(path, mode)
        uses = get_mode(mode)
        fbank, frames, facts = self._read_streams(path, uses.audio, uses.visual)
        audio = fbank.unsqueeze(0) if fbank is not None else None
        frames = frames.unsqueeze(0) if frames is not None else None
        return audio, frames, mode, facts

    def file_inputs(self, path, mode=None):
        """Model inputs of a video or audio file and the mode they run in.

        By default a video with sound uses ``mode``, an audio file ``audio_only_mode`` and
        a video without an audio stream ``video_only_mode`` (its frames alone; no silence
        is made up for the missing audio); ``mode`` overrides that (see :meth:`file_mode`).
        Only the streams the mode reads are decoded.

        Returns
        -------
        tuple
            ``(fbank [1, frames, n_mels] or None, frames [1, n, 3, H, W] or None, mode)``.

        Raises
        ------
        ValueError
            Naming ``path``: the mode needs a stream the file lacks, or the model's
            ``audio_only_mode`` / ``video_only_mode`` is null for a file with one stream.
        BadSampleError
            The file is missing or cannot be decoded.
        """
        return self._file_inputs(path, mode)[:3]

    def classify_file(self, path, mode=None):
        """Classify a video or audio file, as SpeechBrain's
        ``EncoderClassifier.classify_file``.

        Arguments
        ---------
        path : str
            Video (audio track + ``n_frames`` frames) or audio file.
        mode : str, optional
            Overrides the mode chosen from the hparams and the streams of the file (see
            :meth:`file_inputs`).

        Returns
        -------
        tuple
            ``(out_prob [1, classes], score [1], index [1], text_lab [1])`` as
            :meth:`classify_batch` for a batch of this one file.

        Raises
        ------
        ValueError, BadSampleError
            See :meth:`file_inputs`.
        """
        audio, frames, mode = self.file_inputs(path, mode)
        return self.classify_batch(audio, frames, mode=mode)

    def rank_file(self, path, top_k=5, mode=None):
        """Top-``top_k`` classes of a video or audio file with their scores.

        Arguments
        ---------
        path : str
            Video or audio file.
        top_k : int
            Number of classes returned.
        mode : str, optional
            See :meth:`classify_file`.

        Returns
        -------
        list of Prediction
            ``(label, score, index)`` by decreasing score (``score_activation`` of the
            logits, averaged over the frames).
        """
        return self.file_report(path, top_k, mode)["predictions"]

    def file_report(self, path, top_k=5, mode=None, on_step=None):
        """:meth:`rank_file` (same ``path``, ``top_k``, ``mode``) with the mode used and
        what of the file the model saw; ``on_step`` is called with the name of each of the
        mode's :meth:`steps` as it is done.

        Returns
        -------
        dict
            ``mode`` (the mode used), ``frames`` (frames whose scores are averaged; None
            when the mode reads none), the :meth:`input_facts` and ``predictions`` (list
            of :class:`Prediction`, by decreasing score).
        """
        audio, frames, mode, facts = self._file_inputs(path, mode)
        if on_step is not None:
            on_step("read")
        scores = self.scores_batch(audio, frames, mode=mode, on_step=on_step)[0]
        top = scores.topk(min(int(top_k), scores.numel()))
        labels = self.labels(top.indices.tolist())
        preds = [Prediction(lab, float(s), int(i))
                 for lab, s, i in zip(labels, top.values.tolist(), top.indices.tolist())]
        n_frames = frames.shape[1] if frames is not None else None
        return {"mode": mode, "frames": n_frames, **facts, "predictions": preds}

    def encode_file(self, path):
        """Audio and visual embeddings of a file.

        Returns
        -------
        dict
            ``audio`` ``[dim]`` (None without an audio track) and ``visual`` ``[dim]``
            (averaged over the ``n_frames`` frames; None for audio files).
        """
        fbank, frames = self.load_clip(path)
        a, v = self.encode_batch(
            fbank.unsqueeze(0) if fbank is not None else None,
            frames.unsqueeze(0) if frames is not None else None,
        )
        return {"audio": a[0] if a is not None else None,
                "visual": v[0] if v is not None else None}
