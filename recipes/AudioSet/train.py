#!/usr/bin/env python3
"""CAV-MAE on AudioSet: pretraining or fine-tuning, chosen by the hparams' ``task`` key.

Pretraining (contrastive + masked reconstruction)::

    python recipes/AudioSet/train.py hparams/cavmae.yaml \
        --train_data audioset_2m.json --valid_data audioset_eval.json \
        --pretrained_path IN-initial.pth

Fine-tuning (multimodal; cavmae_ft_audioonly.yaml / cavmae_ft_videoonly.yaml for one
modality) from a pretrained checkpoint, then multi-frame evaluation::

    python recipes/AudioSet/train.py hparams/cavmae_ft.yaml \
        --train_data audioset_20k.json --valid_data audioset_eval.json \
        --label_csv class_labels_indices.csv --pretrained_path cav-mae-scale++.pth

Multi-GPU: ``torchrun --nproc_per_node=4 recipes/AudioSet/train.py ...`` (the batch size
is per process). Run options: ``--precision bf16``, ``--debug``, ``--test_only``,
``--ckpt_interval_minutes N``; any top-level yaml key can be overridden.

Authors
 * speechbrain-cavmae contributors 2026
"""

import sys

from speechbrain_cavmae.training.recipe import run_recipe

if __name__ == "__main__":
    run_recipe(sys.argv[1:])
