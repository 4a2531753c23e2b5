"""The five fine-tuning and inference modes of CAV-MAE: the one mode table.

==================  ===========  =================================================
mode                inputs       representation that is pooled
==================  ===========  =================================================
``multimodal``      audio+frames joint stream over ``[audio; visual]`` (``norm``)
``audioonly``       audio        audio-only stream (``norm_a``): a model fine-tuned
                                 on audio
``videoonly``       frames       visual-only stream (``norm_v``): a model fine-tuned
                                 on frames
``missingaudioonly`` audio       a multimodal model given audio only: mean of the
                                 joint-norm and the audio-norm pass
``missingvideoonly`` frames      a multimodal model given frames only: mean of the
                                 joint-norm and the visual-norm pass
==================  ===========  =================================================

The names are those of the original implementation (``ftmode`` / ``get_...``).

Example
-------
>>> MODES
('multimodal', 'audioonly', 'videoonly', 'missingaudioonly', 'missingvideoonly')
>>> get_mode("missingvideoonly")
Mode(name='missingvideoonly', audio=False, visual=True, stream='v', with_joint=True)
>>> [m for m in MODES if get_mode(m).audio]
['multimodal', 'audioonly', 'missingaudioonly']
"""

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Mode:
    """One row of the mode table.

    Attributes
    ----------
    name : str
        The mode's name.
    audio, visual : bool
        Whether the mode reads the audio input / the frames.
    stream : str or None
        ``None`` for the joint stream, ``"a"`` / ``"v"`` for a single-modality stream.
    with_joint : bool
        Average the single-modality pass with a pass through the joint LayerNorms (the
        missing-modality modes of a multimodally fine-tuned model).
    """

    name: str
    audio: bool
    visual: bool
    stream: Optional[str]
    with_joint: bool


_TABLE = (
    Mode("multimodal", audio=True, visual=True, stream=None, with_joint=False),
    Mode("audioonly", audio=True, visual=False, stream="a", with_joint=False),
    Mode("videoonly", audio=False, visual=True, stream="v", with_joint=False),
    Mode("missingaudioonly", audio=True, visual=False, stream="a", with_joint=True),
    Mode("missingvideoonly", audio=False, visual=True, stream="v", with_joint=True),
)

#: Mode names, in the original's order.
MODES = tuple(mode.name for mode in _TABLE)
_BY_NAME = {mode.name: mode for mode in _TABLE}


def get_mode(name):
    """The :class:`Mode` called ``name``; a ``ValueError`` listing the modes otherwise."""
    try:
        return _BY_NAME[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown mode {name!r}; expected one of {MODES}") from None


def check_mode(name):
    """Return ``name`` if it is a mode, else raise a ``ValueError``."""
    return get_mode(name).name


def missing_modality_modes(mode):
    """Modes in which a model fine-tuned in ``mode`` classifies audio alone and frames alone.

    ``(audio_mode, visual_mode)``; ``None`` where the model cannot use that input.

    Example
    -------
    >>> missing_modality_modes("multimodal"), missing_modality_modes("audioonly")
    (('missingaudioonly', 'missingvideoonly'), ('audioonly', None))
    """
    mode = get_mode(mode)
    if mode.name == "multimodal":
        return "missingaudioonly", "missingvideoonly"
    return (mode.name if mode.audio else None), (mode.name if mode.visual else None)
