"""Opening audio and video containers with PyAV.

Opening a container runs libavformat's stream probing, which decodes the first frames of
every stream only to learn formats that decoding finds out anyway: for a 720p h264 track,
about 14 ms of keyframe decoding, a tenth of a seeking frame decode (and paid again when
only the audio track of the clip is wanted). :func:`open_container` asks the probe to skip
video frames (``skip_frame=all``). The option applies to the probe alone: the decoders
PyAV builds afterwards are fresh contexts with the default ``skip_frame``, so decoded
frames, samples and timestamps are those of a plain ``av.open`` (the decoders of audio
codecs ignore the option). ``tests/test_containers.py`` checks this frame by frame and
sample by sample on mp4, Matroska, MPEG-TS, raw H.264, AVI and WebM files and the real
clips, and ``tests/test_frame_reference.py`` compares the package's frames with a plain
``av.open`` decode. With libav's own logging switched on, the probe logs that the video
pixel format is not known yet.

Example
-------
>>> import io
>>> open_container(io.BytesIO(b"not a video"))  # doctest: +IGNORE_EXCEPTION_DETAIL
Traceback (most recent call last):
av.error.InvalidDataError: Invalid data found when processing input
"""

PROBE_OPTIONS = {"skip_frame": "all"}


def open_container(source):
    """``av.open(source)`` for reading, without decoding frames while probing.

    Arguments
    ---------
    source : str or binary file object
        A path, or a file object holding the content.

    Returns
    -------
    av.container.InputContainer
    """
    import av

    return av.open(source, options=PROBE_OPTIONS)


def _start(stream):
    """A stream's start time in seconds (a ``Fraction``), or ``None`` when unknown."""
    if stream.start_time is None or stream.time_base is None:
        return None
    return stream.start_time * stream.time_base


def audio_lead(container, audio, rate):
    """Samples of silence that put ``audio`` on the timeline of the container's video.

    Players (and ffmpeg) align streams by their start times; the frames of
    :mod:`~speechbrain_cavmae.data.frames` are counted from the video's first frame. So the
    waveform's sample 0 is the video's start: a track starting ``d`` seconds later is
    preceded by ``round(d * rate)`` samples of silence (a positive lead), one starting
    earlier loses its first ``round(-d * rate)`` samples (a negative lead). Without a video
    track (other than an attached cover picture), or when either start time is unknown (raw
    streams carry none), the streams start together: 0.

    Arguments
    ---------
    container : av.container.InputContainer
    audio : av.audio.stream.AudioStream
    rate : int
        The audio track's sampling rate.

    Returns
    -------
    int
    """
    import av

    video = container.streams.video[0] if container.streams.video else None
    if video is None or video.disposition & av.stream.Disposition.attached_pic:
        return 0
    audio_start, video_start = _start(audio), _start(video)
    if audio_start is None or video_start is None:
        return 0
    return int(round((audio_start - video_start) * int(rate)))
