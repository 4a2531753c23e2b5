#!/usr/bin/env python3
"""CAV-MAE on VGGSound: pretraining or fine-tuning, chosen by the hparams' ``task`` key.

Pretraining (contrastive + masked reconstruction)::

    python recipes/VGGSound/train.py hparams/vggsound_cavmae.yaml \
        --train_data vgg_train.json --valid_data vgg_test.json \
        --pretrained_path cav-mae-scale++.pth

Fine-tuning (multimodal, cross-entropy; ``--ft_mode audioonly`` / ``videoonly`` for one
modality) from a pretrained checkpoint, then multi-frame evaluation::

    python recipes/VGGSound/train.py hparams/vggsound_cavmae_ft.yaml \
        --train_data vgg_train.json --valid_data vgg_test.json \
        --label_csv class_labels_indices_vgg.csv --pretrained_path cav-mae-scale++.pth

Multi-GPU: ``torchrun --nproc_per_node=4 recipes/VGGSound/train.py ...`` (the batch size
is per process). Run options: ``--precision bf16``, ``--debug``, ``--test_only``,
``--ckpt_interval_minutes N``; any top-level yaml key can be overridden.

Authors
 * speechbrain-cavmae contributors 2026
"""

import sys

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml

from speechbrain_cavmae.checkpoints import load
from speechbrain_cavmae.data.dataset import BadSampleCounter
from speechbrain_cavmae.training import recipe


def main(argv=None):
    """Train and / or evaluate as the hparams file says; returns the Brain."""
    # Command line: the hparams file, run options (--precision, --test_only, ...) and
    # overrides of top-level yaml keys (--train_data, --lr, ...; the model sizes come from
    # --pretrained_path when it is a model folder); DDP under torchrun.
    argv = sys.argv[1:] if argv is None else argv
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    overrides = recipe.complete_overrides(overrides, hparams_file)
    recipe.check_numbers(hparams_file, overrides, run_opts)  # before anything is built
    sb.utils.distributed.ddp_init_group(run_opts)

    with open(hparams_file, encoding="utf8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    recipe.check_hparams(hparams)

    # One run per output folder: refused while another live run holds its lock.
    recipe.lock_output_folder(hparams["output_folder"])
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    recipe.add_tensorboard(hparams)

    # Datasets from the manifests written by vggsound_prepare.py (or from shards).
    bad_samples = BadSampleCounter()
    datasets = recipe.build_datasets(hparams, bad_samples)

    # Initial weights: a model folder, an original CAV-MAE .pth or ImageNet MAE weights.
    if hparams.get("pretrained_path"):
        load(hparams["pretrained_path"], into=hparams["model"],
             trust_remote_code=bool(hparams.get("trust_remote_code", False)))

    # PretrainBrain or FinetuneBrain, by the yaml's task.
    brain = recipe.make_brain(hparams, run_opts, bad_samples)

    # Training resumes from the last checkpoint of output_folder/save.
    if not run_opts["test_only"] or "train" in datasets:
        recipe.fit(brain, hparams, datasets)

    # Evaluation on the test set (multi-frame for fine-tuning with multi_frame_eval).
    if "test" in datasets:
        recipe.evaluate(brain, hparams, datasets)

    # The model folder output_folder/model/ (and pretrained.pth / finetuned.pth).
    recipe.export(brain, hparams, datasets)
    recipe.leave_process_group()
    return brain


if __name__ == "__main__":
    try:
        main()
    except recipe.UsageError as exc:
        print(f"{sys.argv[0]}: error: {exc}", file=sys.stderr)
        sys.exit(2)
