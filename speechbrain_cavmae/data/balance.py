"""Class-balanced sampling weights (as the original ``gen_weight_file.py``).

Each class gets ``1000 / (count + 0.01)`` where ``count`` is its number of
samples; a sample's weight is the sum over its labels. Use the weights with
``torch.utils.data.WeightedRandomSampler(weights, len(weights),
replacement=True)``.

On the command line, ``cavmae balance --manifest MANIFEST --label_csv LABEL_CSV --output
OUT.csv`` (:mod:`speechbrain_cavmae.tools.balance`) writes one weight per line, in
manifest order.

Example
-------
>>> from speechbrain_cavmae.data.manifest import LabelTable
>>> table = LabelTable(["a", "b"])
>>> data = {"x": {"labels": ["a"]}, "y": {"labels": ["a"]}, "z": {"labels": ["a", "b"]}}
>>> class_balanced_weights(data, table).round(1).tolist()
[332.2, 332.2, 1322.3]
"""


import numpy as np

from .manifest import LabelTable, read_manifest


def class_balanced_weights(manifest, label_table):
    """Per-sample weights [num_samples] (manifest path or dict)."""
    data = read_manifest(manifest) if not isinstance(manifest, dict) else manifest
    if not isinstance(label_table, LabelTable):
        label_table = LabelTable.from_csv(label_table)
    indices = [[label_table.index(label) for label in entry["labels"]] for entry in data.values()]
    counts = np.zeros(label_table.num_classes)
    for idx in indices:
        for i in idx:
            counts[i] += 1
    class_weight = 1000.0 / (counts + 0.01)
    return np.array([class_weight[idx].sum() for idx in indices], dtype=np.float64)

