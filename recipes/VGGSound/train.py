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

from speechbrain_cavmae.training.recipe import run_recipe

if __name__ == "__main__":
    run_recipe(sys.argv[1:])
