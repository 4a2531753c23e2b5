"""Write an exported folder: the network(s) as ONNX (or ``torch.export`` programs) with a
dynamic batch size, and ``cavmae_export.json`` (:mod:`.description`).

What is exported:

* a classifier: one graph per mode it runs in (its ``mode`` and the modes for audio
  alone and frames alone, :func:`~speechbrain_cavmae.model.modes.missing_modality_modes`):
  ``fbank [batch, audio_length, n_mels]`` and/or ``frames [batch, n, 3, size, size]`` ->
  ``logits [batch, n, classes]`` (``n = 1`` without frames), as ``forward_frames``;
* a pretraining model: ``audio`` (fbank -> audio-only stream tokens), ``visual`` (frames
  ``[batch, 3, size, size]`` -> visual-only stream tokens) and ``joint`` (both -> joint
  stream tokens);
* a drop-in encoder (:class:`~speechbrain_cavmae.lobes.CAVMAEAudioEncoder` /
  :class:`~speechbrain_cavmae.lobes.CAVMAEVisualEncoder`): ``encoder`` (its input at
  ``audio_length`` frames / ``[batch, n, 3, size, size]`` frames -> its output).

Each ONNX graph is checked with ``onnx.checker``, then run in ONNX Runtime on a generated
batch of another size and compared with PyTorch; the largest difference is recorded.
The folder is built next to ``out_dir`` and renamed into place when complete.

Authors
 * speechbrain-cavmae contributors 2026
"""

import logging
import os
import shutil
import tempfile

import torch
from torch import nn

from speechbrain_cavmae.data.dataset import resolve_config
from speechbrain_cavmae.data.files import atomic_write_json
from speechbrain_cavmae.export.description import (
    EXPORT_FILE,
    FORMAT,
    RUNTIMES,
    VERSION,
    input_description,
)
from speechbrain_cavmae.model.modes import get_mode, missing_modality_modes

logger = logging.getLogger(__name__)

#: ``--quantize`` choices.
QUANTIZE = ("int8",)
#: Largest difference from PyTorch accepted at export time, float32 graphs.
CHECK_TOLERANCE = 1e-3
#: Clips of the generated batch that measures the cost of quantisation.
QUANT_BATCH = 8


class ExportError(ValueError):
    """A model or option that cannot be exported (one line, naming it)."""


class _ModeGraph(nn.Module):
    """``forward_frames`` of one mode, with the inputs that mode reads."""

    def __init__(self, model, mode):
        super().__init__()
        self.model, self.mode = model, get_mode(mode)

    def forward(self, *inputs):
        it = iter(inputs)
        fbank = next(it) if self.mode.audio else None
        frames = next(it) if self.mode.visual else None
        return self.model.forward_frames(fbank, frames, mode=self.mode.name)


class _TokenGraph(nn.Module):
    """Unmasked token sequences of one stream of a CAV-MAE encoder."""

    def __init__(self, encoder, stream):
        super().__init__()
        self.encoder, self.stream = encoder, stream

    def forward(self, *inputs):
        enc = self.encoder
        if self.stream == "audio":
            return enc.encode_audio(inputs[0])
        if self.stream == "visual":
            return enc.encode_visual(inputs[0])
        a = enc.forward_audio_branch(enc.embed_audio(inputs[0]))
        v = enc.forward_visual_branch(enc.embed_visual(inputs[1]))
        return enc.forward_joint(a, v)


class _LobeGraph(nn.Module):
    """A drop-in encoder called on its one input (no ``lens``)."""

    def __init__(self, lobe):
        super().__init__()
        self.lobe = lobe

    def forward(self, *inputs):
        return self.lobe(inputs[0])


def _check_finite(module, name):
    for key, value in list(module.named_parameters()) + list(module.named_buffers()):
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise ExportError(f"{name}: {key} holds NaN or infinite values: cannot export "
                              "a model with non-finite weights")


def _examples(geometry, inputs, batch, n_frames=2, seed=0):
    """Generated inputs named ``inputs`` for a ``batch``."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for name in inputs:
        if name == "fbank":
            shape = (batch, geometry["audio_length"], geometry["n_mels"])
        elif name == "frames":
            shape = (batch, n_frames, 3, geometry["image_size"], geometry["image_size"])
        else:  # one image per clip
            shape = (batch, 3, geometry["image_size"], geometry["image_size"])
        out.append(torch.randn(*shape, generator=gen))
    return tuple(out)


def _dynamic_shapes(inputs):
    batch = torch.export.Dim("batch", min=1, max=4096)
    n = torch.export.Dim("n", min=1, max=1024)
    # one entry: the graphs' ``forward(*inputs)`` takes its inputs as one argument
    return (tuple({0: batch, 1: n} if name == "frames" else {0: batch} for name in inputs),)


def _export_graph(module, inputs, outputs, geometry, path, runtime):
    """Trace ``module`` and write it to ``path``; returns the largest difference between
    the written graph and PyTorch on a generated batch of 3."""
    args = _examples(geometry, inputs, batch=2)
    dynamic = _dynamic_shapes(inputs)
    try:
        if runtime == "exported_program":
            program = torch.export.export(module, args, dynamic_shapes=dynamic)
            torch.export.save(program, path)
        else:
            torch.onnx.export(module, args, path, input_names=list(inputs),
                              output_names=list(outputs), dynamic_shapes=dynamic, dynamo=True,
                              external_data=False, verbose=False, optimize=True)
    except Exception as exc:  # a graph the exporter cannot trace
        while exc.__cause__ is not None:  # the exporter's own cause, not its advice
            exc = exc.__cause__
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(f"cannot trace {type(module).__name__} for {runtime}: {first}") from exc
    if runtime == "onnx":
        import onnx

        onnx.checker.check_model(path, full_check=True)
    return _compare(module, path, runtime, inputs, geometry)


def _compare(module, path, runtime, inputs, geometry, batch=3):
    from speechbrain_cavmae.export.runtime import load_graph

    args = _examples(geometry, inputs, batch=batch, n_frames=3, seed=1)
    with torch.no_grad():
        want = module(*args)
    got = load_graph(path, runtime)(*args)
    return float((got - want).abs().max())


def _geometry(encoder, data_config):
    """Input sizes of ``encoder``; a one-stream encoder takes the other's from the data
    configuration."""
    audio = getattr(encoder, "patch_embed_a", None)
    visual = getattr(encoder, "patch_embed_v", None)
    return {"audio_length": encoder.audio_length if audio else data_config["audio_length"],
            "n_mels": audio.n_mels if audio else data_config["n_mels"],
            "image_size": visual.img_size[0] if visual else data_config["image_size"]}


def _plan(model, kind, mode=None, lobe=None):
    """``{graph name: (module, inputs, outputs)}`` of a model."""
    if kind == "classifier":
        modes = [mode] + [m for m in missing_modality_modes(mode) if m and m != mode]
        plan = {}
        for name in modes:
            uses = get_mode(name)
            inputs = ("fbank",) * uses.audio + ("frames",) * uses.visual
            plan[name] = (_ModeGraph(model, name), inputs, ("logits",))
        return plan
    if kind == "pretrain":
        enc = model.encoder
        return {"audio": (_TokenGraph(enc, "audio"), ("fbank",), ("tokens",)),
                "visual": (_TokenGraph(enc, "visual"), ("image",), ("tokens",)),
                "joint": (_TokenGraph(enc, "joint"), ("fbank", "image"), ("tokens",))}
    inputs = ("fbank",) if kind == "audio_encoder" else ("frames",)
    return {"encoder": (_LobeGraph(lobe), inputs, ("embeddings",))}


def check_lobe(lobe):
    """Refuse, by name, the options of a drop-in encoder that an exported graph cannot
    keep: the graph takes exactly ``audio_length`` fbank frames, so the options for other
    lengths would be dropped silently."""
    from speechbrain_cavmae.lobes import CAVMAEAudioEncoder, CAVMAEJointEncoder, CAVMAEVisualEncoder

    if isinstance(lobe, CAVMAEJointEncoder) or not isinstance(
            lobe, (CAVMAEAudioEncoder, CAVMAEVisualEncoder)):
        raise ExportError(f"{type(lobe).__name__}: only CAVMAEAudioEncoder and "
                          "CAVMAEVisualEncoder export (a classifier or pretraining model "
                          "exports its joint stream)")
    if isinstance(lobe, CAVMAEAudioEncoder):
        inp = lobe.audio_input
        for option, value, ok in (("long_audio", inp.long_audio, "crop"),
                                  ("short_audio", inp.short_audio, "pad")):
            if value != ok:
                raise ExportError(
                    f"CAVMAEAudioEncoder {option}={value!r} cannot be exported: the graph "
                    f"takes exactly audio_length={lobe.encoder.audio_length} fbank frames "
                    f"(use {option}={ok!r})")
        if inp.feature_norm == "utterance":
            raise ExportError("CAVMAEAudioEncoder feature_norm='utterance' cannot be "
                              "exported: normalise with the dataset statistics "
                              "(feature_norm='none' or 'dataset')")
        return "audio_encoder"
    return "visual_encoder"


def _quantize(path, out_path):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(path, out_path, op_types_to_quantize=["MatMul", "Gemm"],
                     weight_type=QuantType.QInt8)


def _quant_cost(plan, folder, graphs, float_files, geometry, activation):
    """Accuracy cost of the int8 graphs on a generated batch: per graph, top-1 agreement
    and largest score difference (classifiers) or the lowest cosine similarity of the
    outputs (encoders) against the float32 graph."""
    from speechbrain_cavmae.export.runtime import load_graph

    cost = {}
    for name, (_, inputs, _) in plan.items():
        args = _examples(geometry, inputs, batch=QUANT_BATCH, n_frames=2, seed=2)
        ref = load_graph(os.path.join(folder, float_files[name]), "onnx")(*args)
        got = load_graph(os.path.join(folder, graphs[name]["file"]), "onnx")(*args)
        if activation is not None:
            act = torch.sigmoid if activation == "sigmoid" else (lambda x: x.softmax(-1))
            ref, got = act(ref).mean(dim=1), act(got).mean(dim=1)
            same = (ref.argmax(-1) == got.argmax(-1)).float()
            cost[name] = {"top1_agreement": float(same.mean()),
                          "max_score_diff": float((ref - got).abs().max()),
                          "clips": QUANT_BATCH}
        else:
            cos = torch.nn.functional.cosine_similarity(ref.flatten(1), got.flatten(1), dim=-1)
            cost[name] = {"min_cosine": float(cos.min()), "clips": QUANT_BATCH}
    return cost


def export_model(model, out_dir, data_config, runtime="onnx", quantize=None, labels=None,
                 score_activation=None, modes=None, lobe=False, source=None, only=None):
    """Export ``model`` to the folder ``out_dir`` (which must not exist).

    Arguments
    ---------
    model : CAVMAEClassifier, CAVMAE, CAVMAEAudioEncoder or CAVMAEVisualEncoder
        In eval mode.
    out_dir : str
        The exported folder (created; an existing path is refused).
    data_config : dict
        The input pipeline (``AudioVisualClassifier.data_config``).
    runtime : str
        ``"onnx"`` or ``"exported_program"``.
    quantize : str, optional
        ``"int8"``: dynamic quantisation of the MatMuls (ONNX only).
    labels : list of str, optional
        Class names (classifiers).
    score_activation : str, optional
        ``sigmoid`` / ``softmax`` (classifiers).
    modes : dict, optional
        ``mode``, ``audio_only_mode``, ``video_only_mode`` of a classifier.
    lobe : bool
        ``model`` is a drop-in encoder.
    source : str, optional
        What the model came from (recorded).
    only : sequence of str, optional
        Export only these graphs (e.g. ``["multimodal"]``); default: all of them.

    Returns
    -------
    dict
        The description written (``check`` holds the differences from PyTorch, ``int8``
        the cost of quantisation).
    """
    if runtime not in RUNTIMES:
        raise ExportError(f"unknown export format {runtime!r}; expected one of {RUNTIMES}")
    if quantize is not None and quantize not in QUANTIZE:
        raise ExportError(f"unknown quantization {quantize!r}; expected one of {QUANTIZE}")
    if quantize and runtime != "onnx":
        raise ExportError(f"--quantize {quantize} is for the onnx format")
    if os.path.exists(out_dir):
        raise ExportError(f"{out_dir} exists: choose a new --output folder")
    name = source or type(model).__name__
    _check_finite(model, name)
    model = model.eval()
    if lobe:
        kind = check_lobe(model)
    else:
        kind = "classifier" if hasattr(model, "head") else "pretrain"
    encoder = model.encoder
    full = resolve_config(data_config, train=False)
    geometry = _geometry(encoder, full)
    data_config = dict(full, **geometry)
    modes = dict(modes or {})
    if kind == "classifier":
        modes.setdefault("mode", model.mode)
    plan = _plan(model, kind, modes.get("mode"), model if lobe else None)
    if only is not None:
        unknown = set(only) - set(plan)
        if unknown:
            raise ExportError(f"no graph {sorted(unknown)} in this {kind}: it has {sorted(plan)}")
        plan = {name: spec for name, spec in plan.items() if name in only}
    suffix = ".onnx" if runtime == "onnx" else ".pt2"
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".export-", dir=parent)
    try:
        graphs, check, float_files = {}, {}, {}
        for graph, (module, inputs, outputs) in plan.items():
            module.eval()
            file = f"{graph}{suffix}"
            logger.info("exporting %s (%s)", graph, runtime)
            with torch.no_grad():
                check[graph] = _export_graph(module, inputs, outputs, geometry,
                                             os.path.join(tmp, file), runtime)
            if check[graph] > CHECK_TOLERANCE:
                raise ExportError(f"{graph}: the exported graph differs from PyTorch by "
                                  f"{check[graph]:.2e} (> {CHECK_TOLERANCE})")
            float_files[graph] = file
            graphs[graph] = {"file": file, "inputs": list(inputs), "outputs": list(outputs)}
        desc = {
            "format": FORMAT, "version": VERSION, "runtime": runtime, "kind": kind,
            "source": os.path.basename(os.fspath(source)) if source else None,
            "graphs": graphs, "input": input_description(data_config),
            "embed_dim": encoder.embed_dim, "patch_size": encoder.patch_size,
            "dynamic_axes": {"batch": "axis 0 of every input and output",
                             "n": "axis 1 of frames and logits (frames per clip)"},
            "check": {"max_abs_diff_from_pytorch": check, "batch": 3},
            "quantized": quantize,
        }
        if kind == "classifier":
            desc.update(modes, labels=list(labels or []), num_classes=model.num_classes,
                        score_activation=score_activation or "softmax")
        elif kind == "audio_encoder":
            inp = model.audio_input
            desc.update(pooling=model.pooling, mask_padding=model.mask_padding,
                        feature_norm=inp.feature_norm)
        elif kind == "visual_encoder":
            desc.update(pooling=model.pooling)
        if quantize:
            for graph, spec in graphs.items():
                spec["file"] = f"{graph}.int8.onnx"
                _quantize(os.path.join(tmp, float_files[graph]), os.path.join(tmp, spec["file"]))
            desc["int8"] = _quant_cost(plan, tmp, graphs, float_files, geometry,
                                       desc.get("score_activation"))
            for file in float_files.values():
                os.remove(os.path.join(tmp, file))
        atomic_write_json(os.path.join(tmp, EXPORT_FILE), desc)
        os.chmod(tmp, 0o777 & ~_umask())
        os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return desc


def _umask():
    from speechbrain_cavmae.data.files import process_umask

    return process_umask()
