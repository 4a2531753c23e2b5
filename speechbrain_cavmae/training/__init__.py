"""Training: SpeechBrain ``Brain`` classes, the recipes' shared plumbing, schedules, metrics.

Modules
-------
brains     : :class:`PretrainBrain` and :class:`FinetuneBrain`.
recipe     : what every ``recipes/*/train.py`` does (arguments, datasets, initial weights,
             checkpointing, export of the model folder).
schedules  : learning-rate schedules of the original recipes.
metrics    : mAP / mAUC / d-prime, top-k accuracy, retrieval recall.
"""
