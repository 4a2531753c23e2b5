"""Generated clips with sound-and-sight events at known moments (CAV-MAE Sync's learning check).

Each clip has ``n_frames`` frames spread over ``n_frames * slot`` fbank frames (``slot``
fbank frames, 10 ms each, per frame). It holds ``events_per_clip`` events of distinct
classes at different moments: an event of class ``c`` starting at frame ``t`` shows a
square of the class's colour (at a random place) in frames ``t`` and ``t + 1``, and plays
the class's tone over the same time, from half a slot before frame ``t``'s position to
half a slot after frame ``t + 1``'s (frame ``k`` sits at fbank frame ``k * slot``, as
:func:`~speechbrain_cavmae.data.frames.frame_position` places it). Between events the
frames show only background noise and the audio only faint noise. A model that pairs each
frame with the audio around it can find when each sound is seen; one that pairs a frame
with the whole clip cannot tell the moments apart.

Files (the layout of :mod:`speechbrain_cavmae.data.toy`)::

    DIR/audio/{id}.wav                 16-bit PCM mono, 16 kHz
    DIR/frames/frame_{i}/{id}.jpg      i = 0 .. n_frames - 1
    DIR/{train,test}.json              {"data": [{"video_id", "wav", "video_path", "labels"}]}
    DIR/class_labels_indices.csv       index,mid,display_name (mids /m/ev00 ...)
    DIR/events.json                    {"slot", "n_frames", "clip_length", "events":
                                        {id: [[class, first_frame], ...]}}

Example
-------
>>> import tempfile
>>> paths = generate_event_clips(tempfile.mkdtemp(), n_train=2, n_test=1, image_size=16)
>>> meta = json.load(open(paths["events"]))
>>> meta["clip_length"], len(meta["events"]["test_0000"])
(256, 2)

Authors
 * speechbrain-cavmae contributors 2026
"""

import json
import os

import numpy as np
from PIL import Image

from speechbrain_cavmae.data.files import atomic_open, atomic_write_json
from speechbrain_cavmae.data.toy import write_wav

#: Class colours (RGB) and tone frequencies (Hz).
COLOURS = ((230, 40, 40), (40, 200, 60), (50, 80, 240), (240, 220, 40),
           (200, 60, 220), (40, 220, 220))
TONES = (250.0, 500.0, 1000.0, 2000.0, 3500.0, 5000.0)
HOP_S = 0.01
WIN_S = 0.025


def draw_events(rng, n_frames, events_per_clip, n_classes, min_gap=3):
    """``[(class, first_frame), ...]``: distinct classes, first frames in
    ``[1, n_frames - 3]`` at least ``min_gap`` frames apart (sorted by time)."""
    classes = rng.choice(n_classes, size=events_per_clip, replace=False)
    for _ in range(1000):
        starts = np.sort(rng.choice(np.arange(1, n_frames - 2), size=events_per_clip,
                                    replace=False))
        if events_per_clip < 2 or np.diff(starts).min() >= min_gap:
            return [(int(c), int(t)) for c, t in zip(classes, starts)]
    raise ValueError(f"cannot place {events_per_clip} events {min_gap} frames apart in "
                     f"{n_frames} frames")


def render_event_audio(events, n_frames, slot, sample_rate, rng):
    """The clip's waveform: faint noise plus each event's tone over its time."""
    clip_length = n_frames * slot
    n = int(round(((clip_length - 1) * HOP_S + WIN_S) * sample_rate))
    x = 0.003 * rng.standard_normal(n)
    t = np.arange(n) / sample_rate
    for cls, start in events:
        lo = max(0.0, (start * slot - slot / 2) * HOP_S)
        hi = ((start + 1) * slot + slot / 2) * HOP_S
        on = (t >= lo) & (t < hi)
        phase = rng.uniform(0, 2 * np.pi)
        x[on] += 0.3 * np.sin(2 * np.pi * TONES[cls] * t[on] + phase)
    return x


def render_event_frames(events, n_frames, image_size, rng):
    """``n_frames`` uint8 images ``[H, W, 3]``: background noise, and each event's square
    in its two frames."""
    frames = rng.integers(90, 130, size=(n_frames, image_size, image_size, 3)).astype(np.uint8)
    side = max(2, image_size // 2)
    for cls, start in events:
        y, x = rng.integers(0, image_size - side + 1, size=2)
        for k in (start, start + 1):
            frames[k, y:y + side, x:x + side] = COLOURS[cls]
    return frames


def generate_event_clips(out_dir, n_train=256, n_test=64, seed=0, n_classes=4, n_frames=16,
                         slot=16, events_per_clip=2, image_size=32, sample_rate=16000):
    """Write the event clips (see the module docstring); returns the paths
    (``train``, ``test``, ``label_csv``, ``events``, ``root``)."""
    if not 2 <= n_classes <= len(COLOURS):
        raise ValueError(f"n_classes must be in 2..{len(COLOURS)}, got {n_classes}")
    if events_per_clip > n_classes:
        raise ValueError("events_per_clip must not exceed n_classes (distinct classes)")
    os.makedirs(os.path.join(out_dir, "audio"), exist_ok=True)
    for i in range(n_frames):
        os.makedirs(os.path.join(out_dir, "frames", f"frame_{i}"), exist_ok=True)
    rng = np.random.default_rng(seed)
    events = {}
    paths = {"root": str(out_dir), "events": os.path.join(out_dir, "events.json")}
    for split, count in (("train", n_train), ("test", n_test)):
        entries = []
        for index in range(count):
            vid = f"{split}_{index:04d}"
            clip_events = draw_events(rng, n_frames, events_per_clip, n_classes)
            events[vid] = clip_events
            write_wav(os.path.join(out_dir, "audio", f"{vid}.wav"),
                      render_event_audio(clip_events, n_frames, slot, sample_rate, rng),
                      sample_rate)
            for k, img in enumerate(render_event_frames(clip_events, n_frames, image_size, rng)):
                Image.fromarray(img).save(
                    os.path.join(out_dir, "frames", f"frame_{k}", f"{vid}.jpg"), quality=95)
            entries.append({"video_id": vid, "wav": f"audio/{vid}.wav", "video_path": "frames",
                            "labels": ",".join(f"/m/ev{c:02d}" for c, _ in clip_events)})
        paths[split] = os.path.join(out_dir, f"{split}.json")
        atomic_write_json(paths[split], {"data": entries})
    paths["label_csv"] = os.path.join(out_dir, "class_labels_indices.csv")
    with atomic_open(paths["label_csv"]) as handle:
        handle.write("index,mid,display_name\n")
        for c in range(n_classes):
            handle.write(f"{c},/m/ev{c:02d},event {c}\n")
    atomic_write_json(paths["events"], {"slot": slot, "n_frames": n_frames,
                                        "clip_length": n_frames * slot, "events": events})
    return paths


__all__ = ["draw_events", "generate_event_clips", "render_event_audio", "render_event_frames"]
