"""An exported folder run as a model: ONNX Runtime (or a ``torch.export`` program) behind
the calls the package makes on a PyTorch model.

:class:`ExportedModel` has what :class:`~speechbrain_cavmae.inference.AudioVisualClassifier`
and the ``embed`` / ``retrieval`` tools call: ``forward_frames`` (classifiers), ``encode``
and an ``encoder`` with ``encode_audio`` / ``encode_visual`` and the input geometry
(pretraining models), so that an exported folder is fed by the package's own input
pipeline.

ONNX Runtime settings (``benchmarks/export.py`` measured them on 2 CPU cores): all graph
optimisations (``ORT_ENABLE_ALL``, which fuses LayerNorm, GELU and attention where the
graph allows), sequential execution, intra-op threads = ``torch.get_num_threads()``.

Authors
 * speechbrain-cavmae contributors 2026
"""

import logging
import os
from types import SimpleNamespace

import torch
from torch import nn

from speechbrain_cavmae.export.description import data_config, read_description
from speechbrain_cavmae.model.modes import get_mode

logger = logging.getLogger(__name__)


def session_options(threads=None, level="all"):
    """ONNX Runtime session options for CPU inference (see the module docstring)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[level]
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.intra_op_num_threads = int(threads or torch.get_num_threads())
    opts.inter_op_num_threads = 1
    return opts


def _check_external_data(path):
    """An ONNX file's external weights must be files inside its own folder."""
    import onnx

    folder = os.path.dirname(os.path.abspath(path))
    proto = onnx.load(path, load_external_data=False)
    for init in proto.graph.initializer:
        if init.data_location != onnx.TensorProto.EXTERNAL:
            continue
        where = {e.key: e.value for e in init.external_data}.get("location", "")
        if os.path.basename(where) != where or not os.path.isfile(os.path.join(folder, where)):
            raise ValueError(f"{path}: weights {init.name} point outside the folder "
                             f"({where!r})")


class OrtGraph:
    """One ONNX graph in an ONNX Runtime session: ``graph(*tensors)`` -> first output as a
    tensor on the device of the first input."""

    def __init__(self, path, threads=None, level="all"):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ImportError("running an exported folder needs onnxruntime: pip install "
                              "'speechbrain-cavmae[onnx]'", name="onnxruntime") from exc
        _check_external_data(path)
        self.path = path
        self.session = ort.InferenceSession(path, session_options(threads, level),
                                            providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def __call__(self, *tensors):
        feed = {name: t.detach().float().cpu().contiguous().numpy()
                for name, t in zip(self.input_names, tensors)}
        out = self.session.run(None, feed)[0]
        return torch.from_numpy(out).to(tensors[0].device)


class ProgramGraph:
    """A saved ``torch.export`` program, called like :class:`OrtGraph`."""

    def __init__(self, path):
        self.path = path
        self.module = torch.export.load(path).module()

    def __call__(self, *tensors):
        device = tensors[0].device
        with torch.no_grad():
            return self.module(*(t.float().cpu() for t in tensors)).to(device)


def load_graph(path, runtime="onnx", threads=None):
    """The graph file ``path`` as a callable (:class:`OrtGraph` / :class:`ProgramGraph`)."""
    return OrtGraph(path, threads) if runtime == "onnx" else ProgramGraph(path)


class ExportedEncoder:
    """The encoder of an exported folder: its input geometry and, for a pretraining
    model, ``encode_audio`` / ``encode_visual`` / ``encode`` / ``joint``."""

    def __init__(self, desc, graphs):
        cfg = data_config(desc)
        self.audio_length = cfg["audio_length"]
        self.patch_size = desc["patch_size"]
        self.embed_dim = desc["embed_dim"]
        self.patch_embed_a = SimpleNamespace(n_mels=cfg["n_mels"])
        size = cfg["image_size"]
        self.patch_embed_v = SimpleNamespace(img_size=(size, size))
        self.image_grid = (size // self.patch_size, size // self.patch_size)
        self.audio_grid = (cfg["n_mels"] // self.patch_size,
                           self.audio_length // self.patch_size)
        self._graphs = graphs
        self.kind = desc["kind"]

    def _graph(self, name):
        if name not in self._graphs:
            raise RuntimeError(f"this exported {self.kind} has no {name!r} graph: export a "
                               "pretraining model for embeddings")
        return self._graphs[name]

    def encode_audio(self, audio):
        """fbank ``[batch, audio_length, n_mels]`` -> audio-only tokens ``[batch, La, dim]``."""
        return self._graph("audio")(audio)

    def encode_visual(self, image):
        """Frames ``[batch, 3, H, W]`` -> visual-only tokens ``[batch, Lv, dim]``."""
        return self._graph("visual")(image)

    def joint(self, audio, image):
        """The joint stream's tokens ``[batch, La + Lv, dim]``."""
        return self._graph("joint")(audio, image)


class ExportedModel(nn.Module):
    """An exported folder as a model (see the module docstring).

    Arguments
    ---------
    folder : str
        The exported folder (its ``cavmae_export.json`` is read with :mod:`json`; graph
        files are loaded from inside the folder only).
    threads : int, optional
        ONNX Runtime intra-op threads (default: ``torch.get_num_threads()``).
    """

    def __init__(self, folder, threads=None):
        super().__init__()
        self.folder = os.path.abspath(folder)
        self.description = desc = read_description(self.folder)
        self.kind = desc["kind"]
        self.runtime = desc["runtime"]
        self._graphs = {name: load_graph(os.path.join(self.folder, spec["file"]),
                                         self.runtime, threads)
                        for name, spec in desc["graphs"].items()}
        self.encoder = ExportedEncoder(desc, self._graphs)
        if self.kind == "classifier":
            self.head = None  # marks a classifier (``AudioVisualClassifier.is_classifier``)
            self.mode = desc["mode"]
            self.num_classes = int(desc["num_classes"])

    def forward_frames(self, audio=None, frames=None, mode=None, on_step=None):
        """Logits ``[batch, n, classes]``, as ``CAVMAEClassifier.forward_frames``."""
        mode = get_mode(mode or self.mode)
        graph = self._graphs.get(mode.name)
        if graph is None:
            raise ValueError(f"{self.folder}: mode {mode.name!r} was not exported (it has "
                             f"{', '.join(sorted(self._graphs))})")
        inputs = []
        for needed, tensor, name in ((mode.audio, audio, "audio"), (mode.visual, frames, "image")):
            if needed:
                if tensor is None:
                    raise ValueError(f"mode {mode.name!r} needs the {name} input")
                inputs.append(tensor)
        logits = graph(*inputs)
        for step in ("audio",) * mode.audio + ("frames",) * mode.visual + ("join",):
            if on_step is not None:
                on_step(step)
        return logits

    def forward(self, audio=None, image=None, mode=None):
        """Logits ``[batch, classes]`` of single frames ``[batch, 3, H, W]``."""
        frames = image.unsqueeze(1) if image is not None else None
        return self.forward_frames(audio, frames, mode)[:, 0]

    def encode(self, audio=None, image=None):
        """``(audio tokens or None, visual tokens or None)``, as ``CAVMAE.encode``."""
        a = self.encoder.encode_audio(audio) if audio is not None else None
        v = self.encoder.encode_visual(image) if image is not None else None
        return a, v

    def embed_tokens(self, audio, image):
        """Audio-only, visual-only and joint stream tokens (``cavmae embed``)."""
        a, v = self.encode(audio, image)
        return {"audio": a, "visual": v, "joint": self.encoder.joint(audio, image)}


def exported_classifier(cls, folder, run_opts=None):
    """An :class:`~speechbrain_cavmae.inference.AudioVisualClassifier` (``cls``) over the
    exported folder ``folder``, with the input pipeline and labels its description
    records."""
    model = ExportedModel(folder)
    desc = model.description
    hparams = dict(data_config(desc))
    if model.kind == "classifier":
        from speechbrain.dataio.encoder import CategoricalEncoder

        hparams.update({k: desc.get(k) for k in ("mode", "audio_only_mode", "video_only_mode",
                                                  "score_activation")})
        labels = desc.get("labels") or [f"class_{i}" for i in range(model.num_classes)]
        hparams["label_encoder"] = CategoricalEncoder()
        hparams["label_encoder"].update_from_iterable(labels)
    elif model.kind != "pretrain":
        raise ValueError(f"{folder}: an exported {model.kind} is a drop-in encoder: run its "
                         "graph with onnxruntime (docs/export.md)")
    return cls(modules={"model": model}, hparams=hparams, run_opts=run_opts)
