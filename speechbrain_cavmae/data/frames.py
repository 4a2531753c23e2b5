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

import logging
import os

import numpy as np
import torch
from PIL import Image

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


def _open_video(path):
    import av

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise BadSampleError(path, "file not found")
    try:
        container = av.open(path)
    except Exception as exc:
        raise BadSampleError(path, f"cannot decode video ({exc})") from exc
    if not container.streams.video:
        container.close()
        raise BadSampleError(path, "cannot decode video (no video track)")
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
    """(num_frames, fps, height, width) of a video (PyAV, no decoding)."""
    with _open_video(path) as container:
        count, fps = _count_and_rate(container, path)
        stream = container.streams.video[0]
        return count, fps, stream.codec_context.height, stream.codec_context.width


def load_video_frames(path, n=10, indices=None, span_s=10.0, num_threads=1):
    """Decode frames of a video.

    Frames are decoded sequentially from the start up to the last one
    needed (only those are converted to RGB). Random access is avoided on
    purpose: decord 0.6.0's seeking returned wrong pictures for one of the
    real test clips (B-frames, keyframes every 160 frames).

    Arguments
    ---------
    path : str
        Video file.
    n : int
        Number of uniformly spaced frames.
    indices : list of int, optional
        Positions among the ``n`` uniformly spaced frames to return (e.g.
        ``[5]`` for the middle one); ``None`` returns all ``n``.
    span_s : float
        Seconds covered by the uniform spacing.
    num_threads : int
        FFmpeg decoding threads (0: FFmpeg's choice).

    Returns
    -------
    torch.Tensor
        uint8 [len(indices) or n, 3, H, W].
    """
    with _open_video(path) as container:
        count, fps = _count_and_rate(container, path)
        frame_ids = sample_frame_indices(count, fps, n, span_s)
        if indices is not None:
            frame_ids = [frame_ids[i] for i in indices]
        wanted = set(frame_ids)
        last = max(frame_ids)
        stream = container.streams.video[0]
        stream.thread_count = num_threads
        got = {}
        decoded = 0
        try:
            for k, frame in enumerate(container.decode(stream)):
                decoded = k + 1
                if k in wanted:
                    got[k] = frame.to_ndarray(format="rgb24")
                if k >= last:
                    break
        except Exception as exc:
            raise BadSampleError(path, f"cannot decode video frames ({exc})") from exc
    missing = sorted(wanted - set(got))
    if missing:
        if not decoded:
            raise BadSampleError(path, "cannot decode video (no decodable frames)")
        # the container over-reported its frame count (OpenCV's read() would
        # fail as well): report it rather than substitute another frame
        raise BadSampleError(
            path, f"video has only {decoded} decodable frames, frame {missing[0]} requested"
        )
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
    try:
        img = Image.open(path)
        img.load()
    except Exception as exc:
        raise BadSampleError(path, f"cannot decode image ({exc})") from exc
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
