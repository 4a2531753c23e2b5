"""Deployment outside the training code: a model exported as ONNX (or a
``torch.export`` program) plus a plain JSON description of its inputs.

* :mod:`~speechbrain_cavmae.export.description`: the ``cavmae_export.json`` file;
* :mod:`~speechbrain_cavmae.export.writer`: ``export_model`` / ``export_lobe`` (``cavmae export``);
* :mod:`~speechbrain_cavmae.export.runtime`: an exported folder run as a model in ONNX
  Runtime (``AudioVisualClassifier``, ``cavmae classify / embed / retrieval``).

See ``docs/export.md``.

Authors
 * speechbrain-cavmae contributors 2026
"""

from speechbrain_cavmae.export.description import EXPORT_FILE, is_export_folder  # noqa: F401
