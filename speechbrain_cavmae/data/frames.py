"""Video frames: index sampling, decoding, the pre-extracted layout, transform.

CAV-MAE represents a clip by ``n = 10`` frames spread uniformly over its
first 10 seconds. The original extractor (OpenCV) computes
``total = min(frame_count, int(fps * 10))`` and the nominal position
``int(i * total / n)`` for frame ``i``, then calls
``set(CAP_PROP_POS_FRAMES, position - 1)`` before ``read()``. With OpenCV's
FFmpeg backend a seek to ``k`` makes the next ``read`` return frame ``k``
(0-based) and a negative seek behaves like a seek to 0, so the images it
saved are frames ``max(position - 1, 0)``: one frame *before* the nominal
position, except for the first. :func:`sample_frame_indices` returns those
decoded indices (``opencv_offset=False`` gives the nominal positions).

Decoded frames are shown as players show them: a display matrix (the container's
rotation, e.g. of a phone's portrait video) is applied as ffmpeg's and OpenCV's
autorotation apply it (:func:`displayed_rgb`).

Frames are either decoded from the video with PyAV or read from the
original pre-extracted layout ``video_path/frame_{i}/{video_id}.jpg`` (224 px
short side resized with torchvision's default bilinear filter,
centre-cropped, JPEG quality 75 as ``save_image`` writes them). Both then go
through :class:`ImageTransform`: resize of the short side to 224 (bicubic
in the original loader, a no-op on its 224 px JPEGs; choose bilinear to
mimic the extractor when decoding full-size frames), centre crop, ImageNet
normalisation.

Example
-------
>>> sample_frame_indices(125, 12.5)
[0, 11, 24, 36, 49, 61, 74, 86, 99, 111]
>>> sample_frame_indices(125, 12.5, opencv_offset=False)
[0, 12, 25, 37, 50, 62, 75, 87, 100, 112]
"""

import io
import logging
import math
import os

import numpy as np
import torch
from PIL import Image

from .containers import open_container
from .errors import BadSampleError

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def sample_frame_indices(num_frames, fps, n=10, span_s=10.0, opencv_offset=True):
    """Indices of the ``n`` frames the original extractor saves.

    Arguments
    ---------
    num_frames : int
        Frames in the video.
    fps : float
        Average frame rate.
    n : int
        Frames to pick.
    span_s : float
        Only the first ``span_s`` seconds are used.
    opencv_offset : bool
        Return the frame OpenCV actually reads after the original's
        ``seek(position - 1)`` (default) instead of the nominal position.

    Returns
    -------
    list of int
        ``n`` 0-based frame indices (repeats are possible for short clips).
    """
    if num_frames <= 0:
        raise ValueError(f"video has no frames (num_frames={num_frames})")
    total = min(int(num_frames), int(fps * span_s))
    if total <= 0:
        total = int(num_frames)
    positions = [int(i * (total / n)) for i in range(n)]
    if opencv_offset:
        positions = [max(p - 1, 0) for p in positions]
    return positions


def middle_frame(n=10):
    """Frame used at evaluation: ``int(n / 2)`` as the original does."""
    return int(n / 2)


#: Seconds between two fbank frames (the 10 ms hop of the Kaldi features).
FBANK_HOP_S = 0.010


def frame_position(k, n, clip_length):
    """Fbank frame that frame ``k`` of ``n`` falls on in a ``clip_length``-frame spectrogram.

    The ``n`` frames spread uniformly over the spectrogram: frame ``k`` sits at
    ``k * clip_length / n``, rounded half to even (Python's ``round``), as CAV-MAE Sync's
    ``map_frame_to_spectrogram`` places it.

    Example
    -------
    >>> [frame_position(k, 16, 1024) for k in (0, 1, 8, 15)]
    [0, 64, 512, 960]
    """
    if not 0 <= k < n:
        raise ValueError(f"frame {k} is not one of the {n} frames of a clip")
    return int(round(k * clip_length / n))


def frame_segment(k, n, clip_length, segment_length):
    """``(start, end)`` fbank frames of the audio segment paired with frame ``k`` of ``n``.

    A ``segment_length`` window centred on :func:`frame_position` (it starts
    ``segment_length // 2`` frames before it), shifted to lie inside ``[0, clip_length)``
    at the clip's ends: the pairing of CAV-MAE Sync (``map_frame_to_spectrogram``). A
    segment longer than the clip is cut to the clip.

    Example
    -------
    >>> [frame_segment(k, 16, 1024, 96) for k in (0, 1, 8, 15)]
    [(0, 96), (16, 112), (464, 560), (912, 1008)]
    >>> frame_segment(15, 16, 1024, 416)
    (608, 1024)
    """
    position = frame_position(k, n, clip_length)
    start = max(0, position - segment_length // 2)
    end = start + segment_length
    if end > clip_length:
        end = clip_length
        start = max(0, end - segment_length)
    return start, end


def frame_segments(n, clip_length, segment_length):
    """:func:`frame_segment` of each of the ``n`` frames: a list of ``(start, end)``."""
    return [frame_segment(k, n, clip_length, segment_length) for k in range(n)]


def segment_seconds(start, end, hop_s=FBANK_HOP_S):
    """``(start_s, end_s)`` of fbank frames ``[start, end)`` on the hop grid (frame ``j``
    starts at ``j * hop_s``; its 25 ms window reaches 15 ms past the end given).

    Example
    -------
    >>> segment_seconds(464, 560)
    (4.64, 5.6)
    """
    return round(start * hop_s, 6), round(end * hop_s, 6)


def _rotation_degrees(matrix):
    """Counter-clockwise degrees of a display matrix (``av_display_rotation_get``), or None."""
    m = [float(v) / 65536.0 for v in matrix[:6]]
    scale0, scale1 = math.hypot(m[0], m[3]), math.hypot(m[1], m[4])
    if scale0 == 0 or scale1 == 0:
        return None
    return -math.degrees(math.atan2(m[1] / scale1, m[0] / scale0))


def _rotation_matrix(clockwise_degrees):
    """The display matrix of a clockwise rotation (``av_display_rotation_set``), 16.16."""
    radians = -math.radians(clockwise_degrees)
    c, s = math.cos(radians), math.sin(radians)
    return [round(c * 65536), round(-s * 65536), 0, round(s * 65536), round(c * 65536), 0,
            0, 0, 1 << 30]


def display_matrix(frame, stream):
    """A decoded frame's display matrix (9 ints, 16.16 fixed point) or None.

    Read from the frame's side data (FFmpeg gives each frame the stream's display matrix),
    else from the ``rotate`` tag (clockwise degrees) that FFmpeg before 5.0 exported.
    """
    side = frame.side_data.get("DISPLAYMATRIX")
    if side is not None:
        return [int(v) for v in np.frombuffer(bytes(side), dtype=np.int32)[:9]]
    rotate = stream.metadata.get("rotate")
    if rotate:
        return _rotation_matrix(float(rotate))
    return None


def orient(rgb, matrix, name="<video>"):
    """``rgb`` [H, W, 3] as displayed under ``matrix`` (see :func:`display_matrix`).

    ffmpeg's autorotation (``fftools``), which OpenCV's FFmpeg backend follows: a rotation
    of 90, 180 or 270 degrees clockwise (with the mirroring a negative determinant adds), or
    a vertical flip. Other angles would need interpolation: an error.

    Example
    -------
    >>> import numpy as np
    >>> rgb = np.arange(6, dtype=np.uint8).reshape(2, 3, 1).repeat(3, 2)
    >>> orient(rgb, _rotation_matrix(90))[..., 0].tolist()  # 90 degrees clockwise
    [[3, 0], [4, 1], [5, 2]]
    """
    ccw = _rotation_degrees(matrix)
    if ccw is None:
        raise BadSampleError(name, f"degenerate display matrix {list(matrix)}")
    theta = -round(ccw)
    theta -= 360 * math.floor(theta / 360 + 0.9 / 360)
    if abs(theta - 90) < 1:
        out = rgb.transpose(1, 0, 2) if matrix[3] > 0 else np.rot90(rgb, -1)
    elif abs(theta - 180) < 1:
        out = rgb[:, ::-1] if matrix[0] < 0 else rgb
        out = out[::-1] if matrix[4] < 0 else out
    elif abs(theta - 270) < 1:
        out = np.rot90(rgb, -1)[::-1] if matrix[3] < 0 else np.rot90(rgb, 1)
    elif abs(theta) < 1 or abs(theta - 360) < 1:
        out = rgb[::-1] if matrix[4] < 0 else rgb
    else:
        raise BadSampleError(name, f"the display matrix rotates by {theta:g} degrees; only "
                             "multiples of 90 degrees can be applied")
    return out if out is rgb else np.ascontiguousarray(out)


def displayed_rgb(frame, stream, name="<video>"):
    """[H, W, 3] uint8 of a decoded frame, oriented as players show it (:func:`orient`)."""
    rgb = frame.to_ndarray(format="rgb24")
    matrix = display_matrix(frame, stream)
    return rgb if matrix is None else orient(rgb, matrix, name)


def _open_video(path, name=None):
    """Open ``path`` (a file, or bytes / a binary file object named ``name``) with PyAV."""
    if isinstance(path, (bytes, bytearray, memoryview)):
        path = io.BytesIO(path)
    if hasattr(path, "read"):
        source, name = path, name or getattr(path, "name", "<video bytes>")
    else:
        source = name = os.fspath(path)
        if not os.path.isfile(source):
            raise BadSampleError(source, "file not found")
    try:
        container = open_container(source)
    except Exception as exc:
        raise BadSampleError(name, f"cannot decode video ({exc})") from exc
    if not container.streams.video:
        container.close()
        raise BadSampleError(name, "cannot decode video (no video track)")
    return container


def _count_and_rate(container, path):
    """(frame count, average fps) as OpenCV's FFmpeg backend reports them."""
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate:
        raise BadSampleError(path, "video track has no frame rate")
    fps = float(rate)
    count = int(stream.frames or 0)
    if count <= 0:  # e.g. mkv/webm: estimate from the duration, as OpenCV does
        if stream.duration is not None and stream.time_base is not None:
            count = int(round(float(stream.duration * stream.time_base) * fps))
        elif container.duration is not None:
            count = int(round(container.duration / 1e6 * fps))
    if count <= 0:
        raise BadSampleError(path, "video track has no frames")
    return count, fps


def video_info(path):
    """(num_frames, fps, height, width) of a video (PyAV, no decoding); the coded size,
    before the display rotation that :func:`load_video_frames` applies."""
    with _open_video(path) as container:
        count, fps = _count_and_rate(container, path)
        stream = container.streams.video[0]
        return count, fps, stream.codec_context.height, stream.codec_context.width


class _NoIndex(Exception):
    """The packets do not map safely to frames: decode sequentially instead."""


class _PacketIndex:
    """Where each frame of a video stream lies, read by demuxing only (no decoding).

    A sequential decode outputs one frame per packet that is not marked discard (an
    edit list's pre-roll), in presentation order: frame ``k`` is the packet with the
    ``k``-th smallest pts. To decode frame ``k`` alone, decoding starts at the
    keyframe packet before it in decode order, or one keyframe earlier when the frame is
    a leading picture of an open GOP (shown before its keyframe).

    Raises ``_NoIndex`` (caught by :func:`load_video_frames`, which then decodes
    sequentially) for packets without pts or with repeated pts.
    """

    def __init__(self, container, stream):
        self.pts, self.keyframe = [], []
        shown = []
        for packet in container.demux(stream):
            if packet.size == 0 and packet.pts is None:
                continue  # the end-of-stream flush packet
            if packet.pts is None:
                raise _NoIndex("a packet without pts")
            if not packet.is_discard:
                shown.append((packet.pts, len(self.pts)))
            self.pts.append(packet.pts)
            self.keyframe.append(bool(packet.is_keyframe))
        shown.sort()
        if len({p for p, _ in shown}) != len(shown):
            raise _NoIndex("repeated pts")
        self.frames = shown  # frame k -> (pts, decode position)
        self.keys = [i for i, key in enumerate(self.keyframe) if key]
        if not self.keys or self.keys[0] != 0:
            raise _NoIndex("the stream does not start with a keyframe")

    def __len__(self):
        return len(self.frames)

    def start_for(self, k):
        """Decode position of the keyframe to start from for frame ``k``."""
        pts, position = self.frames[k]
        keys = [i for i in self.keys if i <= position]
        if len(keys) > 1 and pts < self.pts[keys[-1]]:
            return keys[-2]  # a leading picture: its references precede the keyframe
        return keys[-1]


def _decode_with_seeks(container, stream, index, frame_ids, name):
    """{frame id: rgb array} decoding from the keyframe before each wanted frame.

    Packets whose frame is not wanted are decoded with ``skip_frame = "NONREF"``: the
    decoder drops them when no other frame refers to them (non-reference B-frames), and
    decodes every reference frame as usual, so the wanted frames keep their exact pixels.
    Once every wanted packet has been fed, the decoder is drained instead of being fed
    further packets only to push the last wanted frame out of its reordering buffer.
    """
    wanted = {index.frames[k][0]: k for k in frame_ids}
    last_fed = {k: index.frames[k][1] for k in wanted.values()}  # decode position
    context = stream.codec_context
    got = {}
    position = None  # decode position of the next packet fed to the decoder

    def keep(frames):
        for frame in frames:
            if frame.pts in wanted and wanted[frame.pts] not in got:
                got[wanted[frame.pts]] = displayed_rgb(frame, stream, name)

    for k in sorted(set(frame_ids), key=index.start_for):
        if k in got:
            continue
        start = index.start_for(k)
        if position is None or start > position:
            container.seek(index.pts[start], stream=stream, backward=True, any_frame=False)
            position = None
        for packet in container.demux(stream):
            if position is None:
                if packet.pts != index.pts[start]:
                    raise _NoIndex(f"the seek landed on pts {packet.pts}, not {index.pts[start]}")
                position = start
            if packet.size or packet.pts is not None:
                position += 1
            context.skip_frame = "DEFAULT" if packet.pts in wanted else "NONREF"
            keep(packet.decode())
            if k in got:
                break
            if all(k2 in got or last_fed[k2] < position for k2 in last_fed):
                keep(context.decode(None))  # drain: every wanted packet has been fed
                position = None  # a drained decoder takes packets again after a seek only
                break
        if k not in got:
            raise _NoIndex(f"frame {k} (pts {index.frames[k][0]}) was not output")
    context.skip_frame = "DEFAULT"
    return got


def _seek_and_decode(container, stream, frame_ids, path):
    """(frames, frame count) with :func:`_decode_with_seeks`; (None, 0) when the stream
    must be decoded sequentially instead."""
    try:
        index = _PacketIndex(container, stream)
        if max(frame_ids) >= len(index):
            return {}, len(index)
        return _decode_with_seeks(container, stream, index, frame_ids, path), len(index)
    except _NoIndex as why:
        logger.debug("%s: decoding sequentially (%s)", path, why)
        return None, 0


def _decode_sequentially(container, stream, frame_ids, name):
    """{frame id: rgb array} decoding every frame from the start to the last wanted one."""
    wanted = set(frame_ids)
    last = max(frame_ids)
    got = {}
    decoded = 0
    for k, frame in enumerate(container.decode(stream)):
        decoded = k + 1
        if k in wanted:
            got[k] = displayed_rgb(frame, stream, name)
        if k >= last:
            break
    return got, decoded


def load_video_frames(path, n=10, indices=None, span_s=10.0, num_threads=1, seek=True, name=None,
                      times=None):
    """Decode frames of a video.

    With ``seek`` (default) the packets are first listed by demuxing (cheap: no
    decoding); each wanted frame is then decoded from the keyframe before it
    (``container.seek(..., backward=True, any_frame=False)``, then decoding forward to the
    frame's pts), skipping the decoding of everything before that keyframe. The pictures
    are the very ones a sequential decode gives (the decoder's output from a keyframe
    does not depend on what came before it). Streams whose packets cannot be mapped to
    frames (no pts, repeated pts, a seek that lands elsewhere) are decoded sequentially
    from the start, as ``seek=False`` does. decord is not used: its seeking returned
    wrong pictures for one of the real test clips (B-frames, keyframes every 160 frames).

    Arguments
    ---------
    path : str, bytes or binary file object
        Video file, or its content.
    n : int
        Number of uniformly spaced frames.
    indices : list of int, optional
        Positions among the ``n`` uniformly spaced frames to return (e.g.
        ``[5]`` for the middle one); ``None`` returns all ``n``.
    span_s : float
        Seconds covered by the uniform spacing.
    num_threads : int
        FFmpeg decoding threads (0: FFmpeg's choice).
    seek : bool
        Seek to the keyframe before each wanted frame (``False``: decode from the start).
    name : str, optional
        The name used in error messages when ``path`` is content.
    times : list of float, optional
        Instead of ``n`` / ``indices`` / ``span_s``: the frames shown at these times
        (seconds; frame ``int(t * fps)``, the last frame for a time past the end).

    Returns
    -------
    torch.Tensor
        uint8 [len(times) or len(indices) or n, 3, H, W], H and W as displayed (after the
        rotation).
    """
    name = name or (os.fspath(path) if isinstance(path, (str, os.PathLike)) else None)
    with _open_video(path, name) as container:
        name = name or getattr(path, "name", "<video bytes>")
        count, fps = _count_and_rate(container, name)
        frame_ids = sample_frame_indices(count, fps, n, span_s)
        if times is not None:
            frame_ids = [min(max(int(t * fps), 0), count - 1) for t in times]
        elif indices is not None:
            frame_ids = [frame_ids[i] for i in indices]
        stream = container.streams.video[0]
        stream.thread_count = num_threads
        try:
            if seek:
                got, decoded = _seek_and_decode(container, stream, frame_ids, name)
            if not seek or got is None:
                if hasattr(path, "seek"):
                    path.seek(0)
                with _open_video(path, name) as again:  # decode from the very start
                    again.streams.video[0].thread_count = num_threads
                    got, decoded = _decode_sequentially(again, again.streams.video[0], frame_ids,
                                                        name)
        except BadSampleError:
            raise
        except Exception as exc:
            raise BadSampleError(name, f"cannot decode video frames ({exc})") from exc
    missing = sorted(set(frame_ids) - set(got))
    if missing:
        if not decoded:
            raise BadSampleError(name, "cannot decode video (no decodable frames)")
        # the container over-reported its frame count (OpenCV's read() would
        # fail as well): report it rather than substitute another frame
        raise BadSampleError(
            name, f"video has only {decoded} decodable frames, frame {missing[0]} requested"
        )
    if len(frame_ids) == 1:  # a training sample's one frame: no copy of 2.7 MB (720p)
        batch = got[frame_ids[0]][None]
    else:
        batch = np.stack([got[k] for k in frame_ids])
    return torch.from_numpy(batch).permute(0, 3, 1, 2)


def extracted_frame_path(video_path_dir, video_id, i):
    """``video_path_dir/frame_{i}/{video_id}.jpg`` (the original layout)."""
    return os.path.join(os.fspath(video_path_dir), f"frame_{int(i)}", f"{video_id}.jpg")


def load_extracted_frame(video_path_dir, video_id, i):
    """Open one pre-extracted frame as an RGB ``PIL.Image``.

    Raises :class:`BadSampleError` when the file is missing or not an image.
    """
    path = extracted_frame_path(video_path_dir, video_id, i)
    folder = os.path.join(os.path.abspath(video_path_dir), f"frame_{int(i)}")
    if os.path.dirname(os.path.abspath(path)) != folder:
        raise BadSampleError(path, f"video_id {video_id!r} points outside {folder}")
    if not os.path.isfile(path):
        raise BadSampleError(path, f"extracted frame {i} not found")
    return decode_image(path)


def decode_image(source, name=None):
    """Decode an image file (or its bytes, named ``name`` in errors) to RGB ``PIL.Image``.

    Raises :class:`BadSampleError` when it is not a decodable image.

    Example
    -------
    >>> import io
    >>> buffer = io.BytesIO()
    >>> Image.new("L", (4, 2)).save(buffer, format="PNG")
    >>> decode_image(buffer.getvalue(), "x.png").mode
    'RGB'
    """
    name = name or os.fspath(source)
    try:
        img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        img.load()
    except Exception as exc:
        raise BadSampleError(name, f"cannot decode image ({exc})") from exc
    return img if img.mode == "RGB" else img.convert("RGB")


def resized_size(width, height, size):
    """(width, height) after torchvision-style short-side resize to ``size``."""
    if width <= height:
        return size, int(size * height / width)
    return int(size * width / height), size


_FILTERS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}


class ImageTransform:
    """Short-side resize (bicubic), centre crop, ImageNet normalisation.

    Equivalent to torchvision's ``Resize(size, BICUBIC), CenterCrop(size),
    ToTensor(), Normalize(IMAGENET_MEAN, IMAGENET_STD)`` on a PIL image
    (the original data loader), with fewer copies.

    Note that in the original pipeline this bicubic resize is a no-op: the
    extractor already stored 224 px frames, downsized with torchvision's
    default *bilinear* filter. ``interpolation='bilinear'`` reproduces that
    when frames are decoded straight from the video.

    Arguments
    ---------
    size : int
        Output side.
    mean, std : tuple of float
        Per-channel normalisation.
    interpolation : str
        'bicubic' (default) or 'bilinear'.

    Example
    -------
    >>> import numpy as np
    >>> t = ImageTransform(224)
    >>> t(np.zeros((144, 256, 3), dtype=np.uint8)).shape
    torch.Size([3, 224, 224])
    """

    def __init__(self, size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD, interpolation="bicubic"):
        if interpolation not in _FILTERS:
            raise ValueError(f"interpolation must be one of {sorted(_FILTERS)}, got {interpolation!r}")
        self.size = int(size)
        self.filter = _FILTERS[interpolation]
        std_t = torch.tensor(std, dtype=torch.float32)
        self._scale = (1.0 / (255.0 * std_t)).view(3, 1, 1)
        self._shift = (torch.tensor(mean, dtype=torch.float32) / std_t).view(3, 1, 1)

    def to_pil(self, image):
        """Accept PIL / HWC uint8 numpy / CHW uint8 tensor; return RGB PIL."""
        if isinstance(image, Image.Image):
            return image if image.mode == "RGB" else image.convert("RGB")
        if torch.is_tensor(image):
            image = image.permute(1, 2, 0).contiguous().numpy()
        return Image.fromarray(np.asarray(image, dtype=np.uint8))

    def resize_crop(self, image):
        """Resize + centre crop, returning a ``size`` x ``size`` PIL image."""
        img = self.to_pil(image)
        width, height = img.size
        new_w, new_h = resized_size(width, height, self.size)
        if (new_w, new_h) != (width, height):
            img = img.resize((new_w, new_h), self.filter)
        if (new_w, new_h) != (self.size, self.size):
            top = int(round((new_h - self.size) / 2.0))
            left = int(round((new_w - self.size) / 2.0))
            img = img.crop((left, top, left + self.size, top + self.size))
        return img

    def normalize(self, array):
        """HWC uint8 array -> normalised CHW float tensor."""
        x = torch.from_numpy(np.array(array, dtype=np.uint8)).permute(2, 0, 1).float()
        return x.mul_(self._scale).sub_(self._shift)

    def __call__(self, image):
        return self.normalize(self.resize_crop(image))
