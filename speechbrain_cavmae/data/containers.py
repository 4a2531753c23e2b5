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
