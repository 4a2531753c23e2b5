"""A deterministic audio-visual toy world, written in the CAV-MAE data layout.

Every clip shows one object and plays one sound. The *class* decides the visual
object (shape, colour, texture) and the sound (timbre, rhythm). Inside a clip,
continuous latent attributes are shared by the two modalities, so that matching a
sound to *its* video (retrieval) needs more than the class:

==================  =====================================  ==========================
latent (in [0, 1])  visual                                 audio
==================  =====================================  ==========================
``size``            object radius (bigger ...)             pitch (... lower f0)
``brightness``      object colour intensity                loudness (RMS in dB)
``onset``           x position (left = early) and the      onset time of the sound
                    first frame showing the object
==================  =====================================  ==========================

Nuisance factors are drawn independently per modality and do not correlate across
them: background shade/gradient, clutter blobs and per-frame pixel noise in the
frames; pink background noise and a random distractor tone in the audio; the
vertical object position and the partial phases.

Files (the layout of the original pre-processed AudioSet / VGGSound data)::

    DIR/audio/{video_id}.wav              16-bit PCM mono, ``sample_rate`` Hz
    DIR/frames/frame_{i}/{video_id}.jpg   i = 0..9, ``image_size`` square RGB, q=95
    DIR/{train,valid,test}.json           {"data": [{"video_id", "wav", "video_path",
                                                     "labels"}]}
    DIR/class_labels_indices.csv          index,mid,display_name (mids /m/toy00 ...)
    DIR/meta.json                         parameters, classes, per-clip latents

``wav`` and ``video_path`` in the manifests are relative to the manifest's folder
(``audio/<id>.wav`` and ``frames``) unless ``absolute_paths=True``.

Frame ``i`` is taken at time ``(i + 0.5) * duration / 10`` (the middle of the i-th
tenth of the clip) and shows the object only if that time is not before the audio
onset. Onsets lie in ``[0, 0.4 * duration]``, so frames 4..9 (including the
middle frame 5 that the reference uses for evaluation) always show the object.
Size and brightness do not change over the clip, so any single frame carries
them.

Default duration 1.94 s gives exactly 192 Kaldi fbank frames (25 ms window, 10 ms
shift, ``snip_edges``), a multiple of the 16-frame patch size; see
:func:`fbank_num_frames`.

Usage::

    cavmae toy --output data/toy --n_train 480 --n_valid 80 --n_test 80 --seed 0

(:mod:`speechbrain_cavmae.tools.toy`).

Authors
 * speechbrain-cavmae contributors
"""

import csv
import json
import logging
import os
import shutil
import time
import wave
from pathlib import Path

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

__all__ = [
    "generate_toy_dataset",
    "make_classes",
    "sample_latents",
    "render_audio",
    "render_frames",
    "frame_times",
    "fbank_num_frames",
]

GENERATOR_VERSION = 1
N_FRAMES = 10
MAX_ONSET_FRACTION = 0.4  # onset in [0, 0.4 * duration]
F0_RANGE = (220.0, 1760.0)  # three octaves; big object -> low pitch
RMS_DB_RANGE = (-34.0, -16.0)  # source loudness (dBFS RMS), dark -> quiet
RADIUS_RANGE = (0.12, 0.30)  # object radius as a fraction of the image size
BRIGHTNESS_RANGE = (0.35, 1.0)  # multiplier of the class colour
SPLIT_CODES = {"train": 0, "valid": 1, "test": 2}

SHAPES = ["circle", "square", "triangle", "diamond", "cross", "ring", "star", "bar"]
COLOURS = [
    ("red", (1.0, 0.15, 0.1)),
    ("green", (0.15, 0.95, 0.2)),
    ("blue", (0.2, 0.35, 1.0)),
    ("yellow", (1.0, 0.9, 0.1)),
    ("magenta", (1.0, 0.2, 0.9)),
    ("cyan", (0.1, 0.95, 0.95)),
    ("orange", (1.0, 0.55, 0.05)),
    ("white", (0.95, 0.95, 0.95)),
]
TEXTURES = ["solid", "striped", "checkered"]
# Partials as (frequency ratio, amplitude); "hiss" is band noise around f0.
TIMBRES = {
    "flute": [(1.0, 1.0), (2.0, 0.15)],
    "clarinet": [(n, 1.0 / n) for n in (1, 3, 5, 7, 9)],
    "brass": [(n, 1.0 / n) for n in range(1, 9)],
    "bell": [(1.0, 1.0), (2.76, 0.6), (5.40, 0.4), (8.93, 0.25)],
    "organ": [(1.0, 1.0), (2.0, 0.5), (3.0, 0.3)],  # with 6 Hz vibrato
    "hiss": None,
    "buzz": [(n, n**-0.5) for n in range(1, 13)],
    "dyad": [(1.0, 1.0), (1.5, 0.7), (2.0, 0.3)],
}
TIMBRE_NAMES = list(TIMBRES)
# name -> (kind, rate in Hz)
RHYTHMS = [
    ("steady", "steady", 0.0),
    ("2 Hz pulsed", "gate", 2.0),
    ("4 Hz pulsed", "gate", 4.0),
    ("8 Hz tremolo", "tremolo", 8.0),
]
MAX_CLASSES = 32  # (timbre, rhythm) pairs stay unique up to here


# ---------------------------------------------------------------------------
# classes and latents
# ---------------------------------------------------------------------------
def make_classes(n_classes=8):
    """Builds the class table.

    Class ``k`` uses shape ``k % 8``, colour ``(k + k // 8) % 8``, texture
    ``k % 3``, timbre ``k % 8`` and rhythm ``(k + k // 8) % 4``, so every class has
    a distinct (shape, colour) and a distinct (timbre, rhythm) pair.

    Arguments
    ---------
    n_classes : int
        Number of classes, 1 to 32.

    Returns
    -------
    list of dict
        Keys ``index, mid, display_name, shape, colour, rgb, texture, timbre,
        rhythm``.

    Example
    -------
    >>> classes = make_classes(8)
    >>> classes[0]["mid"], classes[0]["display_name"]
    ('/m/toy00', 'red circle + steady flute')
    >>> classes[1]["display_name"]
    'green striped square + 2 Hz pulsed clarinet'
    """
    if not 1 <= n_classes <= MAX_CLASSES:
        raise ValueError(f"n_classes must be in [1, {MAX_CLASSES}], got {n_classes}")
    classes = []
    for k in range(n_classes):
        q = k // 8
        shape = SHAPES[k % 8]
        colour, rgb = COLOURS[(k + q) % 8]
        texture = TEXTURES[k % 3]
        timbre = TIMBRE_NAMES[k % 8]
        rhythm = RHYTHMS[(k + q) % 4][0]
        visual = f"{colour} {shape}" if texture == "solid" else f"{colour} {texture} {shape}"
        classes.append(
            {
                "index": k,
                "mid": f"/m/toy{k:02d}",
                "display_name": f"{visual} + {rhythm} {timbre}",
                "shape": shape,
                "colour": colour,
                "rgb": list(rgb),
                "texture": texture,
                "timbre": timbre,
                "rhythm": rhythm,
            }
        )
    return classes


def frame_times(duration, n_frames=N_FRAMES):
    """Times (s) of the extracted frames: the middle of each 1/n_frames segment.

    Example
    -------
    >>> frame_times(2.0, 4).tolist()
    [0.25, 0.75, 1.25, 1.75]
    """
    return (np.arange(n_frames) + 0.5) * duration / n_frames


def fbank_num_frames(duration, sample_rate=16000, win_ms=25.0, hop_ms=10.0):
    """Number of Kaldi fbank frames (``snip_edges=True``) for a clip.

    Example
    -------
    >>> fbank_num_frames(1.94), fbank_num_frames(2.575)
    (192, 256)
    """
    n = int(round(duration * sample_rate))
    win = int(sample_rate * win_ms / 1000)
    hop = int(sample_rate * hop_ms / 1000)
    return 0 if n < win else 1 + (n - win) // hop


def sample_latents(rng, duration):
    """Draws the shared (cross-modal) latent attributes of one clip.

    Arguments
    ---------
    rng : numpy.random.Generator
        Source of randomness.
    duration : float
        Clip length in seconds.

    Returns
    -------
    dict
        ``size``, ``brightness`` (in [0, 1]) and ``onset`` (seconds, in
        ``[0, 0.4 * duration]``).

    Example
    -------
    >>> lat = sample_latents(np.random.default_rng(0), 2.0)
    >>> sorted(lat), 0 <= lat["onset"] <= 0.8
    (['brightness', 'onset', 'size'], True)
    """
    size, brightness, onset_u = rng.random(3)
    return {
        "size": float(size),
        "brightness": float(brightness),
        "onset": float(onset_u * MAX_ONSET_FRACTION * duration),
    }


def _f0(size):
    lo, hi = F0_RANGE
    return lo * (hi / lo) ** (1.0 - size)


def _rms_db(brightness):
    lo, hi = RMS_DB_RANGE
    return lo + (hi - lo) * brightness


# ---------------------------------------------------------------------------
# audio
# ---------------------------------------------------------------------------
def _coloured_noise(rng, n, exponent):
    """Unit-RMS noise with power spectrum ~ 1 / f**exponent."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.shape[0], dtype=np.float64)
    f[0] = 1.0
    spec *= f ** (-exponent / 2.0)
    spec[0] = 0.0
    x = np.fft.irfft(spec, n)
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def _envelope(t, onset, rhythm):
    """Amplitude envelope of the source: silent before ``onset``."""
    _, kind, rate = next(r for r in RHYTHMS if r[0] == rhythm)
    tau = t - onset
    attack = np.clip(tau / 0.01, 0.0, 1.0)  # 10 ms attack at the onset
    if kind == "steady":
        env = np.ones_like(t)
    elif kind == "gate":
        ph = np.mod(np.maximum(tau, 0.0) * rate, 1.0)  # pulses start at the onset
        ramp = 0.008 * rate  # 8 ms ramps, in cycles
        env = np.clip(np.minimum(ph, 0.5 - ph) / ramp, 0.0, 1.0)
    else:  # tremolo, maximal at the onset
        env = 0.55 + 0.45 * np.cos(2 * np.pi * rate * np.maximum(tau, 0.0))
    return env * attack


def render_audio(latents, cls, duration, sample_rate, rng):
    """Synthesises the waveform of one clip.

    Source: the class timbre at ``f0`` (from ``size``), the class rhythm starting
    at ``onset``, scaled to ``rms_db`` (from ``brightness``, -34..-16 dBFS) over
    its active part; a clip whose peak would exceed 0.99 is scaled down instead of
    clipped (``rms_db`` in the returned info is the final level). Nuisance (from
    ``rng``, independent of the frames): pink noise at -55..-42 dBFS and, with
    probability 0.8, a pure distractor tone (150-5000 Hz, -42..-30 dBFS, 0.2-1.0 s
    long, anywhere in the clip).

    Arguments
    ---------
    latents : dict
        From :func:`sample_latents`.
    cls : dict
        One entry of :func:`make_classes`.
    duration : float
        Seconds.
    sample_rate : int
        Hz.
    rng : numpy.random.Generator
        Nuisance randomness.

    Returns
    -------
    numpy.ndarray
        [n_samples] float32 in [-1, 1].
    dict
        Audio-side attributes (``f0``, ``rms_db``, distractor and noise levels).

    Example
    -------
    >>> cls = make_classes(1)[0]
    >>> lat = {"size": 0.5, "brightness": 1.0, "onset": 0.2}
    >>> x, info = render_audio(lat, cls, 1.0, 16000, np.random.default_rng(0))
    >>> x.shape, round(info["f0"], 1), bool(np.abs(x[:3000]).max() < 0.05)
    ((16000,), 622.3, True)
    """
    n = int(round(duration * sample_rate))
    t = np.arange(n) / sample_rate
    f0 = _f0(latents["size"])
    nyquist_guard = 0.45 * sample_rate
    if cls["timbre"] == "hiss":
        spec = np.fft.rfft(rng.standard_normal(n))
        freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
        spec *= np.exp(-0.5 * (np.log(freqs / f0 + 1e-12) / 0.08) ** 2)
        tone = np.fft.irfft(spec, n)
    else:
        phase_t = t
        if cls["timbre"] == "organ":  # 6 Hz vibrato, +-3 %
            phase_t = t - 0.03 / (2 * np.pi * 6.0) * np.cos(2 * np.pi * 6.0 * t)
        partials = [(r, a) for r, a in TIMBRES[cls["timbre"]] if r * f0 < nyquist_guard]
        ratios = np.array([r for r, _ in partials])[:, None]
        amps = np.array([a for _, a in partials])[:, None]
        phases = rng.uniform(0, 2 * np.pi, size=(len(partials), 1))
        tone = (amps * np.sin(2 * np.pi * f0 * ratios * phase_t[None, :] + phases)).sum(0)
    env = _envelope(t, latents["onset"], cls["rhythm"])
    source = tone * env
    active = t >= latents["onset"]
    rms_db = _rms_db(latents["brightness"])
    source *= 10 ** (rms_db / 20) / (np.sqrt(np.mean(source[active] ** 2)) + 1e-12)

    noise_db = float(rng.uniform(-55.0, -42.0))
    noise = _coloured_noise(rng, n, exponent=1.0) * 10 ** (noise_db / 20)
    info = {"f0": float(f0), "rms_db": float(rms_db), "noise_db": noise_db}
    if rng.random() < 0.8:
        d_freq = float(np.exp(rng.uniform(np.log(150.0), np.log(5000.0))))
        d_db = float(rng.uniform(-42.0, -30.0))
        d_len = float(rng.uniform(0.2, 1.0))
        d_start = float(rng.uniform(0.0, max(duration - d_len, 0.0)))
        fade = np.clip(np.minimum(t - d_start, d_start + d_len - t) / 0.02, 0.0, 1.0)
        phase = rng.uniform(0, 2 * np.pi)
        noise += np.sqrt(2) * 10 ** (d_db / 20) * fade * np.sin(2 * np.pi * d_freq * t + phase)
        info.update(distractor_hz=d_freq, distractor_db=d_db, distractor_start=d_start,
                    distractor_len=d_len)
    x = source + noise
    peak = float(np.abs(x).max())
    if peak > 0.99:  # rare (peaky noise bands): scale down rather than clip
        x *= 0.99 / peak
        info["rms_db"] += 20 * np.log10(0.99 / peak)
    return x.astype(np.float32), info


def write_wav(path, x, sample_rate):
    """Writes float samples in [-1, 1] as 16-bit PCM mono WAV (stdlib ``wave``)."""
    pcm = np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes(pcm.tobytes())


# ---------------------------------------------------------------------------
# frames
# ---------------------------------------------------------------------------
def _shape_mask(shape, dx, dy, r):
    """Boolean mask of ``shape`` of radius ``r`` on offsets ``dx, dy``."""
    ax, ay = np.abs(dx), np.abs(dy)
    dist = np.hypot(dx, dy)
    if shape == "circle":
        return dist <= r
    if shape == "square":
        return np.maximum(ax, ay) <= 0.85 * r
    if shape == "triangle":  # apex up
        v = (dy + r) / (2 * r)  # 0 at the apex, 1 at the base
        return (v >= 0) & (v <= 0.9) & (ax <= v * 1.1 * r)
    if shape == "diamond":
        return ax + ay <= r
    if shape == "cross":
        w = 0.33 * r
        return ((ax <= w) & (ay <= r)) | ((ay <= w) & (ax <= r))
    if shape == "ring":
        return (dist <= r) & (dist >= 0.55 * r)
    if shape == "star":
        theta = np.arctan2(dy, dx)
        return dist <= r * (0.6 + 0.4 * np.cos(5 * theta + np.pi / 2))
    if shape == "bar":  # horizontal ellipse
        return (dx / r) ** 2 + (dy / (0.6 * r)) ** 2 <= 1
    raise ValueError(f"unknown shape {shape!r}")


def _texture(texture, xx, yy, r):
    """1 on the light parts of the texture, 0 on the dark parts."""
    if texture == "solid":
        return np.ones_like(xx)
    if texture == "striped":
        period = max(4.0, 0.7 * r)
        return (np.mod((xx + yy) / period, 1.0) < 0.5).astype(np.float64)
    cell = max(3.0, 0.6 * r)  # checkered
    return (np.mod(np.floor(xx / cell) + np.floor(yy / cell), 2) == 0).astype(np.float64)


def render_frames(latents, cls, duration, image_size, rng, n_frames=N_FRAMES):
    """Renders the ``n_frames`` RGB frames of one clip.

    The object (class shape/colour/texture) has radius
    ``(0.12 + 0.18 * size) * image_size``, colour ``class_rgb * (0.35 + 0.65 *
    brightness)`` and x position ``onset / (0.4 * duration)`` across the free
    width; it is drawn (2x supersampled) on frames whose time is not before the
    onset. Nuisance (from ``rng``): background shade, gradient and tint, 3-8
    static clutter blobs, vertical position, Gaussian pixel noise per frame.

    Arguments
    ---------
    latents : dict
        From :func:`sample_latents`.
    cls : dict
        One entry of :func:`make_classes`.
    duration : float
        Seconds (for the frame times).
    image_size : int
        Frame height and width in pixels.
    rng : numpy.random.Generator
        Nuisance randomness.
    n_frames : int
        Frames per clip.

    Returns
    -------
    numpy.ndarray
        [n_frames, image_size, image_size, 3] uint8.
    dict
        Visual-side attributes (radius and centre in pixels, visible frames).

    Example
    -------
    >>> cls = make_classes(1)[0]
    >>> lat = {"size": 1.0, "brightness": 1.0, "onset": 0.6}
    >>> f, info = render_frames(lat, cls, 2.0, 64, np.random.default_rng(0))
    >>> f.shape, info["visible"][:4]
    ((10, 64, 64, 3), [False, False, False, True])
    """
    s = image_size
    ss = 2  # supersampling factor for smooth edges
    coords = (np.arange(s * ss) + 0.5) / ss
    xx, yy = np.meshgrid(coords, coords)

    # background: shade + linear gradient + tint + clutter blobs (static)
    shade = rng.uniform(0.12, 0.30)
    angle = rng.uniform(0, 2 * np.pi)
    grad = rng.uniform(0.0, 0.10) * ((np.cos(angle) * xx + np.sin(angle) * yy) / s - 0.5)
    tint = rng.uniform(-0.03, 0.03, size=3)
    bg = (shade + grad)[..., None] + tint
    for _ in range(int(rng.integers(3, 9))):
        bx, by = rng.uniform(0, s, size=2)
        rx, ry = rng.uniform(0.03, 0.08, size=2) * s
        grey = rng.uniform(0.1, 0.6)
        col = np.clip(grey + rng.uniform(-0.15, 0.15, size=3), 0, 1)
        blob = ((xx - bx) / rx) ** 2 + ((yy - by) / ry) ** 2 <= 1
        bg[blob] = col

    # object
    r = (RADIUS_RANGE[0] + (RADIUS_RANGE[1] - RADIUS_RANGE[0]) * latents["size"]) * s
    margin = r + 1.0
    x_u = latents["onset"] / (MAX_ONSET_FRACTION * duration)
    cx = margin + x_u * (s - 2 * margin)
    cy = margin + rng.random() * (s - 2 * margin)
    mask = _shape_mask(cls["shape"], xx - cx, yy - cy, r)
    light = _texture(cls["texture"], xx - cx, yy - cy, r)
    b = BRIGHTNESS_RANGE[0] + (BRIGHTNESS_RANGE[1] - BRIGHTNESS_RANGE[0]) * latents["brightness"]
    colour = np.asarray(cls["rgb"]) * b
    obj = colour * (0.45 + 0.55 * light)[..., None]
    fg = np.where(mask[..., None], obj, bg)

    def pool(img):  # average the ss x ss sub-pixels
        return img.reshape(s, ss, s, ss, 3).mean(axis=(1, 3))

    bg, fg = pool(bg), pool(fg)
    visible = frame_times(duration, n_frames) >= latents["onset"]
    frames = np.where(visible[:, None, None, None], fg[None], bg[None])
    frames = frames + rng.normal(0.0, 0.015, size=frames.shape)
    frames = np.round(np.clip(frames, 0.0, 1.0) * 255.0).astype(np.uint8)
    info = {"radius_px": float(r), "cx_px": float(cx), "cy_px": float(cy),
            "visible": [bool(v) for v in visible]}
    return frames, info


# ---------------------------------------------------------------------------
# dataset
# ---------------------------------------------------------------------------
def _clip_rngs(seed, split, index):
    """Independent generators (latents, audio nuisance, visual nuisance) of a clip.

    Seeded by (seed, split, index) only, so a clip does not depend on how many
    other clips are generated.
    """
    ss = np.random.SeedSequence([int(seed), SPLIT_CODES[split], int(index)])
    return [np.random.default_rng(s) for s in ss.spawn(3)]


def _paths(out_dir):
    out_dir = Path(out_dir)
    paths = {split: out_dir / f"{split}.json" for split in SPLIT_CODES}
    paths["label_csv"] = out_dir / "class_labels_indices.csv"
    paths["meta"] = out_dir / "meta.json"
    paths["root"] = out_dir
    return {k: str(v) for k, v in paths.items()}


def generate_toy_dataset(
    out_dir,
    n_train=480,
    n_valid=80,
    n_test=80,
    seed=0,
    duration=1.94,
    image_size=64,
    n_classes=8,
    sample_rate=16000,
    absolute_paths=False,
):
    """Generates (or reuses) the toy audio-visual dataset in ``out_dir``.

    Clip ``j`` of a split has class ``j % n_classes`` (balanced classes) and id
    ``toy_{split}_{j:05d}``. The output is byte-identical for identical
    arguments. If ``out_dir/meta.json`` records identical parameters and the
    manifests exist, nothing is written. If it records other parameters, the
    previous toy data (``audio/``, ``frames/``, manifests) is removed first.
    ``meta.json`` is written last, so an interrupted run is never reused.

    Arguments
    ---------
    out_dir : str or Path
        Output folder (created if needed).
    n_train, n_valid, n_test : int
        Number of clips per split (total, over all classes).
    seed : int
        Random seed.
    duration : float
        Clip length in seconds (1.94 s -> 192 fbank frames).
    image_size : int
        Frame size in pixels (square), at least 32.
    n_classes : int
        1 to 32.
    sample_rate : int
        Audio sample rate in Hz.
    absolute_paths : bool
        Write absolute ``wav`` / ``video_path`` entries instead of paths relative
        to the manifest's folder.

    Returns
    -------
    dict
        Paths (str): ``train``, ``valid``, ``test`` (manifests), ``label_csv``,
        ``meta``, ``root``.

    Example
    -------
    >>> import tempfile, json
    >>> out = generate_toy_dataset(tempfile.mkdtemp(), 2, 1, 1, n_classes=2)
    >>> json.load(open(out["train"]))["data"][1]["labels"]
    '/m/toy01'
    """
    for name, n in (("n_train", n_train), ("n_valid", n_valid), ("n_test", n_test)):
        if int(n) < 0:
            raise ValueError(f"{name} must be >= 0, got {n}")
    if image_size < 32:
        raise ValueError(f"image_size must be >= 32, got {image_size}")
    if duration <= 0.1:
        raise ValueError(f"duration must be > 0.1 s, got {duration}")
    if sample_rate < 8000:
        raise ValueError(f"sample_rate must be >= 8000 Hz, got {sample_rate}")
    classes = make_classes(n_classes)
    out_dir = Path(out_dir)
    paths = _paths(out_dir)
    params = {
        "generator_version": GENERATOR_VERSION,
        "n_train": int(n_train),
        "n_valid": int(n_valid),
        "n_test": int(n_test),
        "seed": int(seed),
        "duration": float(duration),
        "image_size": int(image_size),
        "n_classes": int(n_classes),
        "sample_rate": int(sample_rate),
        "absolute_paths": bool(absolute_paths),
    }
    meta_path = Path(paths["meta"])
    if meta_path.exists():
        try:
            old = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{meta_path}: unreadable toy metadata ({err})") from err
        manifests_ok = all(Path(paths[s]).exists() for s in SPLIT_CODES)
        if old.get("params") == params and manifests_ok:
            logger.info("Toy dataset in %s is up to date, reusing it", out_dir)
            return paths
        logger.info("Toy dataset in %s has other parameters, regenerating", out_dir)
        meta_path.unlink()
        for sub in ("audio", "frames"):
            shutil.rmtree(out_dir / sub, ignore_errors=True)
        for split in SPLIT_CODES:
            Path(paths[split]).unlink(missing_ok=True)

    start = time.time()
    audio_dir = out_dir / "audio"
    frames_dir = out_dir / "frames"
    audio_dir.mkdir(parents=True, exist_ok=True)
    for i in range(N_FRAMES):
        (frames_dir / f"frame_{i}").mkdir(parents=True, exist_ok=True)

    with open(paths["label_csv"], "w", newline="") as f:
        writer = csv.writer(f, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        writer.writerow(["index", "mid", "display_name"])
        for c in classes:
            writer.writerow([c["index"], c["mid"], c["display_name"]])

    clips = {}
    root = out_dir.resolve() if absolute_paths else None
    for split, n in (("train", n_train), ("valid", n_valid), ("test", n_test)):
        entries = []
        for j in range(int(n)):
            cls = classes[j % n_classes]
            vid = f"toy_{split}_{j:05d}"
            rng_lat, rng_audio, rng_vis = _clip_rngs(seed, split, j)
            lat = sample_latents(rng_lat, duration)
            wav, a_info = render_audio(lat, cls, duration, sample_rate, rng_audio)
            frames, v_info = render_frames(lat, cls, duration, image_size, rng_vis)
            write_wav(audio_dir / f"{vid}.wav", wav, sample_rate)
            for i in range(N_FRAMES):
                Image.fromarray(frames[i]).save(
                    frames_dir / f"frame_{i}" / f"{vid}.jpg", quality=95
                )
            wav_rel, frames_rel = f"audio/{vid}.wav", "frames"
            if root is not None:
                wav_rel, frames_rel = str(root / wav_rel), str(root / frames_rel)
            entries.append(
                {"video_id": vid, "wav": wav_rel, "video_path": frames_rel,
                 "labels": cls["mid"]}
            )
            clips[vid] = {"split": split, "class": cls["index"], **lat, **a_info,
                          **v_info}
        with open(paths[split], "w") as f:
            json.dump({"data": entries}, f, indent=1)

    meta = {
        "params": params,
        "classes": classes,
        "frame_times": [float(t) for t in frame_times(duration)],
        "fbank_frames": fbank_num_frames(duration, sample_rate),
        "clips": clips,
    }
    tmp = meta_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, meta_path)
    logger.info(
        "Wrote %d toy clips to %s in %.1f s", len(clips), out_dir, time.time() - start
    )
    return paths
