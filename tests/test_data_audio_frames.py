"""Audio loading, frame sampling/decoding and the image transform."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from media import (
    REAL_CLIPS,
    SHARED_SAMPLES,
    decode_index,
    original_extractor_frames,
    tone,
    write_frames,
    write_long_wav,
    write_video,
    write_wav,
)
from speechbrain_cavmae.data import audio as audio_module
from speechbrain_cavmae.data.audio import audio_info, load_audio, source_samples
from speechbrain_cavmae.data.errors import BadSampleError
from speechbrain_cavmae.data.frames import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageTransform,
    load_extracted_frame,
    load_video_frames,
    sample_frame_indices,
    video_info,
)


def peak_hz(wav, rate=16000):
    spec = np.abs(np.fft.rfft(wav.numpy()))
    return np.argmax(spec) * rate / len(wav)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    paths = {
        "stereo_mp4": write_video(str(d / "stereo.mp4"), n_frames=125, fps=12.5, size=(32, 32),
                                  audio_freqs=(440.0, 1000.0)),
        "ntsc_mp4": write_video(str(d / "ntsc.mp4"), n_frames=320, fps=30000 / 1001, size=(32, 32),
                                audio_freqs=(300.0,), audio_seconds=1.0),
        "noaudio_mp4": write_video(str(d / "noaudio.mp4"), n_frames=5, audio_freqs=()),
        "wav44": write_wav(str(d / "a44.wav"), np.stack([tone(500, 1.0, 44100), tone(2000, 1.0, 44100)]), 44100),
        "flac": write_wav(str(d / "a.flac"), tone(700, 0.5, 16000), 16000),
        "empty_wav": write_wav(str(d / "empty.wav"), np.zeros(0, np.float32), 16000),
        "garbage": str(d / "garbage.mp4"),
        "garbage_wav": str(d / "garbage.wav"),
    }
    for key in ("garbage", "garbage_wav"):
        with open(paths[key], "wb") as handle:
            handle.write(b"not a media file" * 64)
    return paths


# -- audio -----------------------------------------------------------------

def test_wav_resampled_and_mixed(media):
    mixed = load_audio(media["wav44"])
    assert mixed.dtype == torch.float32 and mixed.dim() == 1
    assert abs(mixed.numel() - 16000) <= 1
    first = load_audio(media["wav44"], channel=0)
    second = load_audio(media["wav44"], channel=1)
    assert abs(peak_hz(first) - 500) < 3 and abs(peak_hz(second) - 2000) < 3
    torch.testing.assert_close(mixed, (first + second) / 2, atol=1e-5, rtol=0)


def test_flac_native_rate(media):
    wav = load_audio(media["flac"])
    assert wav.numel() == 8000 and abs(peak_hz(wav) - 700) < 3


def test_audio_from_video_container(media):
    left = load_audio(media["stereo_mp4"], channel=0)
    right = load_audio(media["stereo_mp4"], channel=1)
    assert abs(left.numel() - 160000) < 2048  # 10 s + AAC frame padding
    assert abs(peak_hz(left) - 440) < 2 and abs(peak_hz(right) - 1000) < 2
    rate, channels, duration = audio_info(media["stereo_mp4"])
    assert (rate, channels) == (44100, 2) and abs(duration - 10.0) < 0.1


@pytest.mark.parametrize("key,reason", [
    ("missing", "file not found"),
    ("garbage", "cannot open container"),
    ("garbage_wav", "cannot decode audio"),
    ("noaudio_mp4", "no audio track"),
    ("empty_wav", "audio is empty"),
])
def test_audio_errors_name_file_and_problem(media, tmp_path, key, reason):
    path = media.get(key, str(tmp_path / "missing.wav"))
    with pytest.raises(BadSampleError) as info:
        load_audio(path)
    assert info.value.path == path and reason in info.value.reason
    assert path in str(info.value) and reason in str(info.value)


def test_channel_out_of_range(media):
    with pytest.raises(BadSampleError, match="channel 3 requested but audio has 2"):
        load_audio(media["wav44"], channel=3)


# -- the audio on the video's timeline ------------------------------------------

def _tone_span(wav, rate=16000, level=0.1):
    """(first, last) second where the waveform is louder than ``level``."""
    loud = np.flatnonzero(np.abs(wav.numpy()) > level)
    return loud[0] / rate, loud[-1] / rate


@pytest.mark.parametrize("audio_start,span", [
    (2.0, (2.0, 4.0)),   # the audio track starts 2 s after the video: 2 s of silence first
    (-1.0, (0.0, 1.0)),  # the video starts 1 s after the audio: the audio's first second is cut
    (0.0, (0.0, 2.0)),
])
def test_audio_is_placed_on_the_video_timeline(tmp_path, audio_start, span):
    path = write_video(str(tmp_path / "clip.mp4"), n_frames=50, fps=10, size=(16, 16),
                       audio_seconds=2.0, audio_start=audio_start)  # a 2 s tone
    wav = load_audio(path)
    first, last = _tone_span(wav)
    assert abs(first - span[0]) < 0.03 and abs(last - span[1]) < 0.03, (first, last)
    if audio_start > 0:
        assert wav[: int(1.9 * 16000)].abs().max() < 1e-3  # silence, not the tone
    window = load_audio(path, max_samples=3 * 16000)
    torch.testing.assert_close(window, wav[: 3 * 16000], atol=1e-6, rtol=0)


# -- only the samples used are read -----------------------------------------------

@pytest.mark.parametrize("key", ["wav44", "flac", "stereo_mp4", "ntsc_mp4"])
@pytest.mark.parametrize("max_samples", [1, 4000, 16001, 10 ** 7])
def test_a_window_is_the_start_of_the_whole(media, key, max_samples):
    whole = load_audio(media[key], channel=0)
    window = load_audio(media[key], channel=0, max_samples=max_samples)
    # the same samples; the resampler's convolution may round a short input differently
    torch.testing.assert_close(window, whole[:max_samples], atol=1e-6, rtol=0)


@pytest.fixture
def frames_read(monkeypatch):
    """Counts the source frames that soundfile returns and the container samples converted."""
    import soundfile

    counts = {"soundfile": 0, "container": 0}
    read, to_float = soundfile.SoundFile.read, audio_module._frame_to_float

    def counting_read(self, *args, **kwargs):
        data = read(self, *args, **kwargs)
        counts["soundfile"] += len(data)
        return data

    def counting_to_float(frame):
        counts["container"] += frame.samples
        return to_float(frame)

    monkeypatch.setattr(soundfile.SoundFile, "read", counting_read)
    monkeypatch.setattr(audio_module, "_frame_to_float", counting_to_float)
    return counts


def test_a_long_wav_is_read_only_where_used(tmp_path, frames_read):
    """A 20-minute 44.1 kHz wav (a sparse file): the fbank of a training item reads its first
    10.26 s (and its last frame, which shows the file is complete), not 52.9 M frames."""
    from speechbrain_cavmae.data.dataset import build_dataset

    rate, minutes = 44100, 20
    path = write_long_wav(str(tmp_path / "long.wav"), 60 * minutes, rate, start=5.0,
                          data=0.5 * np.sin(2 * np.pi * 440 * np.arange(rate) / rate))
    manifest = tmp_path / "m.json"
    manifest.write_text('{"a": {"wav": "long.wav", "video_id": "a", "labels": []}}')
    loader = build_dataset(str(manifest), None, {"frame_source": "video"}).loader
    used = loader.samples_used()  # 164080 at 16 kHz
    wav = loader.waveform("a")
    assert wav.numel() == used
    assert frames_read["soundfile"] <= source_samples(used, rate, 16000) + 1
    first, last = _tone_span(wav)
    assert abs(first - 5.0) < 0.01 and abs(last - 6.0) < 0.01


def test_a_long_container_track_is_decoded_only_where_used(tmp_path, frames_read):
    path = write_video(str(tmp_path / "long.mp4"), n_frames=60, fps=1, size=(16, 16),
                       audio_freqs=(440.0,), audio_seconds=60.0)
    used = 3 * 16000
    wav = load_audio(path, max_samples=used)
    assert wav.numel() == used
    assert frames_read["container"] <= source_samples(used, 44100, 16000) + 1024  # + 1 frame


def test_a_flac_cut_after_the_window_is_still_refused(tmp_path):
    """Only the first 0.5 s are used, the file is cut at 40 % of 4 s: its last frame, read
    by a seek, shows it."""
    whole = write_wav(str(tmp_path / "whole.flac"), tone(440, 4.0, 16000), 16000)
    cut = tmp_path / "cut.flac"
    data = open(whole, "rb").read()
    cut.write_bytes(data[: int(0.4 * len(data))])
    assert load_audio(whole, max_samples=8000).numel() == 8000
    with pytest.raises(BadSampleError, match="truncated audio: the last of the 64000 frames"):
        load_audio(str(cut), max_samples=8000)


# -- frame indices -----------------------------------------------------------

def test_indices_match_original_extractor_spacing():
    # 12.5 fps, 125 frames: total = min(125, 125); positions int(i * 12.5)
    assert sample_frame_indices(125, 12.5, opencv_offset=False) == [0, 12, 25, 37, 50, 62, 75, 87, 100, 112]
    # cv2 seek(position - 1) + read() returns frame position - 1 (0 for the first)
    assert sample_frame_indices(125, 12.5) == [0, 11, 24, 36, 49, 61, 74, 86, 99, 111]
    # 29.97 fps, 400 frames: total = min(400, int(299.7)) = 299; positions int(i * 29.9)
    assert sample_frame_indices(400, 30000 / 1001, opencv_offset=False) == [
        0, 29, 59, 89, 119, 149, 179, 209, 239, 269]
    # short clip: fewer frames than requested -> repeats, all valid
    short = sample_frame_indices(4, 25.0)
    assert len(short) == 10 and max(short) < 4
    with pytest.raises(ValueError, match=r"video has no frames \(num_frames=0\)"):
        sample_frame_indices(0, 25.0)


@pytest.mark.parametrize("key,count,fps", [("stereo_mp4", 125, 12.5), ("ntsc_mp4", 320, 30000 / 1001)])
def test_decoded_frames_are_the_sampled_ones(media, key, count, fps):
    frames = load_video_frames(media[key])
    assert frames.shape == (10, 3, 32, 32) and frames.dtype == torch.uint8
    got = [decode_index(f.permute(1, 2, 0).numpy()) for f in frames]
    ref = original_extractor_frames(media[key])  # independent of the package
    assert ref["count"] == count and abs(ref["fps"] - fps) < 1e-9
    assert got == ref["read"]
    middle = load_video_frames(media[key], indices=[5])
    assert middle.shape == (1, 3, 32, 32) and torch.equal(middle[0], frames[5])


@pytest.mark.parametrize("key,reason", [
    ("missing", "file not found"), ("garbage", "cannot decode video"), ("wav44", "no video track")])
def test_video_errors_name_file_and_problem(media, tmp_path, key, reason):
    path = media.get(key, str(tmp_path / "missing.mp4"))
    with pytest.raises(BadSampleError) as info:
        load_video_frames(path)
    assert info.value.path == path and reason in info.value.reason


def test_video_info(media):
    frames, fps, height, width = video_info(media["stereo_mp4"])
    assert (frames, height, width) == (125, 32, 32) and abs(fps - 12.5) < 1e-6


# -- transform and extracted layout -----------------------------------------

@pytest.mark.parametrize("size", [(256, 144), (144, 256), (300, 300), (224, 224)])
def test_image_transform_equals_torchvision(size):
    import torchvision.transforms as T

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    ref = T.Compose([T.Resize(224, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(224),
                     T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])(img)
    ours = ImageTransform(224)(img)
    assert ours.shape == (3, 224, 224)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    # tensor and numpy inputs give the same
    chw = torch.from_numpy(np.array(img)).permute(2, 0, 1)
    torch.testing.assert_close(ImageTransform(224)(chw), ours)
    bilinear = T.Compose([T.Resize(224), T.CenterCrop(224), T.ToTensor(),
                          T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])(img)
    torch.testing.assert_close(ImageTransform(224, interpolation="bilinear")(img), bilinear,
                               atol=1e-5, rtol=0)


def test_extracted_layout(tmp_path):
    write_frames(str(tmp_path), "vid", n=3, size=64)
    img = load_extracted_frame(str(tmp_path), "vid", 2)
    assert img.mode == "RGB" and img.size == (64, 64)
    assert decode_index(np.asarray(img)) == 2
    with pytest.raises(BadSampleError) as info:
        load_extracted_frame(str(tmp_path), "vid", 7)
    assert info.value.path == os.path.join(str(tmp_path), "frame_7", "vid.jpg")
    assert "extracted frame 7 not found" in info.value.reason
    with open(tmp_path / "frame_1" / "vid.jpg", "wb") as handle:
        handle.write(b"broken")
    with pytest.raises(BadSampleError, match="cannot decode image"):
        load_extracted_frame(str(tmp_path), "vid", 1)


# -- the two real clips -------------------------------------------------------

@pytest.mark.skipif(not os.path.isdir(SHARED_SAMPLES), reason="../shared/samples not present")
@pytest.mark.parametrize("clip,count,fps", [(REAL_CLIPS[0], 125, 12.5), (REAL_CLIPS[1], 400, 30000 / 1001)])
def test_real_clips_frames_and_indices(clip, count, fps):
    path = os.path.join(SHARED_SAMPLES, clip)
    n, rate, _, _ = video_info(path)
    assert n == count and abs(rate - fps) < 1e-3
    raw = load_video_frames(path)
    frames = torch.stack([ImageTransform(224)(f) for f in raw])
    assert frames.shape == (10, 3, 224, 224)
    expected = {125: [0, 11, 24, 36, 49, 61, 74, 86, 99, 111],
                400: [0, 28, 58, 88, 118, 148, 178, 208, 238, 268]}[count]
    assert sample_frame_indices(n, rate) == expected
