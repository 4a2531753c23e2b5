"""Reading and writing models: the one loader and the model folder.

Modules
-------
loader        : detects a checkpoint's format and loads it strictly (every reader uses it).
original      : key mapping of the original CAV-MAE ``.pth`` files and ImageNet MAE weights.
model_folder  : writes the self-describing model folder (``hyperparams.yaml``,
                ``model.ckpt``, ``label_encoder.txt``) that ``from_hparams`` reads.
"""
