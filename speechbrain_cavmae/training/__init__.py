"""Training: SpeechBrain ``Brain`` classes, the recipes' shared plumbing, schedules, metrics.

Modules
-------
brains     : :class:`PretrainBrain` and :class:`FinetuneBrain`.
guard      : the DDP and robustness bookkeeping both brains share (:class:`GuardedBrain`).
state      : what a run keeps: checkpointed state (weight averaging, running sums, epoch
             counts, random state, the atomic checkpointer) and its history file.
recipe     : what every ``recipes/*/train.py`` does (arguments, datasets, initial weights,
             checkpointing, export of the model folder).
schedules  : learning-rate schedules of the original recipes.
metrics    : mAP / mAUC / d-prime, top-k accuracy, retrieval recall.
accumulators : those metrics collected over batches; the metric set of a task.
"""
