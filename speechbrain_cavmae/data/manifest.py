"""Label tables and manifests.

Three manifest formats are read into one normalised form, an ordered
``dict`` mapping a sample id to an entry with the keys

``video_id`` (str), ``labels`` (list of label ids, possibly empty),
``wav`` (audio file or video container, optional), ``video`` (video file
for on-the-fly decoding, optional), ``video_path`` (folder holding the
pre-extracted ``frame_{i}/{video_id}.jpg`` layout, optional), plus any
extra fields. Relative paths are resolved against the manifest's folder.

* the original CAV-MAE JSON: ``{"data": [{"video_id", "wav", "video_path",
  "labels": "mid1,mid2"}]}``;
* a SpeechBrain JSON: ``{"<id>": {"wav": ..., "video": ..., "labels": ...}}``
  (``labels`` a list or a comma-separated string; ``$key`` replacements as
  in ``speechbrain.dataio.dataio.load_data_json``);
* a SpeechBrain CSV with an ``ID`` column and any of ``wav``, ``video``,
  ``video_path``, ``video_id``, ``labels`` (labels separated by ``,`` or
  ``;``).

Example
-------
>>> import json, os, tempfile
>>> folder = tempfile.mkdtemp()
>>> path = os.path.join(folder, "m.json")
>>> _ = open(path, "w").write(json.dumps({"data": [{"video_id": "a",
...     "wav": "audio/a.wav", "video_path": "frames", "labels": "/m/x,/m/y"}]}))
>>> entry = read_manifest(path)["a"]
>>> entry["labels"], entry["wav"] == os.path.join(folder, "audio", "a.wav")
(['/m/x', '/m/y'], True)
"""

import csv
import json
import logging
import os
import re

from .errors import ManifestError
from .files import atomic_open, atomic_write_json

logger = logging.getLogger(__name__)

PATH_KEYS = ("wav", "video", "video_path")
_LABEL_SPLIT = re.compile(r"[,;]")


class LabelTable:
    """The label CSV of CAV-MAE: columns ``index, mid, display_name``.

    Arguments
    ---------
    mids : list of str
        Label ids in index order.
    names : list of str, optional
        Display names in index order.

    Example
    -------
    >>> table = LabelTable(["/m/a", "/m/b", "/m/c"], ["A", "B", "C"])
    >>> table.num_classes
    3
    >>> table.encode(["/m/c", "B"]).tolist()
    [0.0, 1.0, 1.0]
    """

    def __init__(self, mids, names=None, path=None):
        self.mids = list(mids)
        self.names = list(names) if names is not None else list(self.mids)
        self.path = path
        self.mid_to_index = {m: i for i, m in enumerate(self.mids)}
        self.name_to_index = {n: i for i, n in enumerate(self.names)}
        if len(self.mid_to_index) != len(self.mids):
            raise ValueError(f"{path or 'label table'}: duplicate label ids")

    @classmethod
    def from_csv(cls, path):
        """Read ``index,mid,display_name`` (rows may come in any order)."""
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: label CSV not found")
        with open(path, newline="", encoding="utf-8-sig") as handle:  # a BOM is dropped
            reader = csv.DictReader(handle)
            missing = {"index", "mid"} - set(reader.fieldnames or [])
            if missing:
                raise ValueError(f"{path}: label CSV lacks column(s) {sorted(missing)}")
            rows = [(int(r["index"]), r["mid"], r.get("display_name") or r["mid"]) for r in reader]
        rows.sort()
        if [r[0] for r in rows] != list(range(len(rows))):
            raise ValueError(f"{path}: label indices are not 0..{len(rows) - 1}")
        return cls([r[1] for r in rows], [r[2] for r in rows], path=path)

    def to_csv(self, path):
        """Write the table in the original ``index,mid,display_name`` format."""
        with atomic_open(path, newline="") as handle:
            writer = csv.writer(handle, quoting=csv.QUOTE_MINIMAL)
            writer.writerow(["index", "mid", "display_name"])
            for i, (mid, name) in enumerate(zip(self.mids, self.names)):
                writer.writerow([i, mid, name])

    @property
    def num_classes(self):
        return len(self.mids)

    def __len__(self):
        return len(self.mids)

    def __contains__(self, label):
        return label in self.mid_to_index or label in self.name_to_index

    def index(self, label):
        """Index of a label given by mid (or, failing that, display name)."""
        if label in self.mid_to_index:
            return self.mid_to_index[label]
        if label in self.name_to_index:
            return self.name_to_index[label]
        raise KeyError(f"label {label!r} not in {self.path or 'the label table'}")

    def encode(self, labels, positive=1.0, negative=0.0):
        """Multi-hot float vector [num_classes] for a list of labels."""
        import torch

        out = torch.full((self.num_classes,), float(negative))
        for label in labels:
            out[self.index(label)] = positive
        return out

    def decode(self, vector, threshold=0.5):
        """Mids whose score exceeds ``threshold``."""
        import torch

        return [self.mids[i] for i in torch.nonzero(torch.as_tensor(vector) > threshold).flatten().tolist()]


def split_labels(labels):
    """``"a,b"`` / ``"a;b"`` / list -> list of stripped label ids."""
    if labels is None:
        return []
    if isinstance(labels, (list, tuple)):
        return [str(x).strip() for x in labels if str(x).strip()]
    return [x.strip() for x in _LABEL_SPLIT.split(str(labels)) if x.strip()]


def _resolve(value, root):
    if value is None or value == "":
        return None
    value = os.path.expanduser(str(value))
    return value if os.path.isabs(value) else os.path.normpath(os.path.join(root, value))


def _normalise(sample_id, raw, root, replacements=None):
    entry = dict(raw)
    if replacements:
        for key, val in entry.items():
            if isinstance(val, str):
                for name, rep in replacements.items():
                    val = val.replace("$" + name, str(rep))
                entry[key] = val
    for key in PATH_KEYS:
        entry[key] = _resolve(entry.get(key), root)
    entry["video_id"] = str(entry.get("video_id") or sample_id)
    entry["labels"] = split_labels(entry.get("labels"))
    return entry


def _unique_id(sample_id, data, source):
    if sample_id not in data:
        return sample_id
    k = 2
    while f"{sample_id}#{k}" in data:
        k += 1
    logger.warning("%s: duplicate id %r renamed %r", source, sample_id, f"{sample_id}#{k}")
    return f"{sample_id}#{k}"


class _JSONObject(dict):
    """A parsed JSON object that keeps its ``pairs`` when a key is repeated (a ``dict``
    keeps only the last value: :func:`read_speechbrain_json` renames the others)."""

    def __init__(self, pairs):
        super().__init__(pairs)
        self.pairs = pairs if len(self) < len(pairs) else None


def load_json_manifest(json_path):
    """The parsed content of a JSON manifest, checked to be a JSON object (UTF-8, a byte
    order mark allowed).

    Raises
    ------
    ManifestError
        An empty (0-byte) file, invalid JSON (with its line and column), or a top-level
        value that is not an object, naming the file.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "m.json")
    >>> _ = open(path, "w").write("[1, 2]")
    >>> try:
    ...     load_json_manifest(path)
    ... except ManifestError as err:
    ...     print(err.reason[:42])
    the top-level JSON value is a list, not an
    """
    json_path = os.fspath(json_path)
    with open(json_path, "rb") as handle:
        raw = handle.read()
    if not raw.strip():
        raise ManifestError(json_path, f"empty manifest ({len(raw)} bytes)")
    try:
        content = json.loads(raw.decode("utf-8-sig"), object_pairs_hook=_JSONObject)
    except UnicodeDecodeError as exc:
        raise ManifestError(json_path, f"not UTF-8 text ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ManifestError(
            json_path, f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    if not isinstance(content, dict):
        raise ManifestError(
            json_path, f"the top-level JSON value is a {type(content).__name__}, not an "
            "object: expected {\"data\": [...]} (CAV-MAE) or {\"<id>\": {...}} (SpeechBrain)")
    return content


def read_original_manifest(json_path):
    """Read the original CAV-MAE ``{"data": [...]}`` JSON.

    Returns an ordered dict keyed by ``video_id`` (duplicates get a ``#k``
    suffix and a warning; :mod:`speechbrain_cavmae.tools.validate` reports them).
    """
    json_path = os.fspath(json_path)
    content = load_json_manifest(json_path)
    if not isinstance(content.get("data"), list):
        raise ManifestError(json_path, "not a CAV-MAE manifest (no top-level 'data' list)")
    root = os.path.dirname(os.path.abspath(json_path))
    data = {}
    for i, raw in enumerate(content["data"]):
        if not isinstance(raw, dict):
            raise ManifestError(json_path, f"entry {i} is a {type(raw).__name__}, not an object")
        if "video_id" not in raw:
            raise ManifestError(json_path, f"entry {i} has no 'video_id'")
        sample_id = _unique_id(str(raw["video_id"]), data, json_path)
        data[sample_id] = _normalise(sample_id, raw, root)
        data[sample_id]["video_id"] = str(raw["video_id"])
        if sample_id != str(raw["video_id"]):
            data[sample_id]["duplicate_of"] = str(raw["video_id"])
    return data


def read_speechbrain_json(json_path, replacements=None):
    """Read a SpeechBrain-style ``{id: {...}}`` JSON manifest.

    A repeated id keeps every entry: the later ones are renamed ``id#2``, ``id#3``... with a
    warning, as by the other readers (:mod:`speechbrain_cavmae.tools.validate` reports them).
    """
    json_path = os.fspath(json_path)
    content = load_json_manifest(json_path)
    root = os.path.dirname(os.path.abspath(json_path))
    pairs = content.pairs or list(content.items())
    for key, value in pairs:
        if not isinstance(value, dict):
            raise ManifestError(json_path, f"entry {key!r} is a {type(value).__name__}, not an "
                                "object")
    data = {}
    for key, value in pairs:
        sample_id = _unique_id(str(key), data, json_path)
        data[sample_id] = _normalise(str(key), value, root, replacements)  # video_id: key
        if sample_id != str(key):
            data[sample_id]["duplicate_of"] = str(key)
    return data


def read_speechbrain_csv(csv_path, replacements=None):
    """Read a SpeechBrain-style CSV manifest with an ``ID`` column."""
    csv_path = os.fspath(csv_path)
    root = os.path.dirname(os.path.abspath(csv_path))
    data = {}
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:  # a BOM is dropped
        reader = csv.DictReader(handle, skipinitialspace=True)
        if "ID" not in (reader.fieldnames or []):
            raise ManifestError(csv_path, "CSV manifest needs an 'ID' column")
        for row in reader:
            raw_id = row.pop("ID")
            sample_id = _unique_id(raw_id, data, csv_path)
            data[sample_id] = _normalise(raw_id, row, root, replacements)  # video_id: ID
            if sample_id != raw_id:
                data[sample_id]["duplicate_of"] = raw_id
    return data


def read_manifest(path, replacements=None):
    """Read any supported manifest (format detected from content)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: manifest not found")
    if path.lower().endswith(".csv"):
        return read_speechbrain_csv(path, replacements)
    content = load_json_manifest(path)
    if isinstance(content.get("data"), list):
        return read_original_manifest(path)
    return read_speechbrain_json(path, replacements)


def unlabelled_entries(data):
    """``(id, reason)`` of the entries without any label (what fine-tuning cannot use).

    A misspelled ``labels`` field reads as no labels: the reason lists the entry's fields
    so that the typo shows.

    Example
    -------
    >>> unlabelled_entries({"a": {"labels": ["/m/x"]}, "b": {"labels": [], "lables": "x"}})
    [('b', "no labels (its fields: lables); fine-tuning needs a non-empty 'labels' field")]
    """
    out = []
    for sample_id, entry in data.items():
        if not entry.get("labels"):
            fields = ", ".join(sorted(k for k in entry if entry[k] not in (None, "", [])))
            out.append((sample_id, f"no labels (its fields: {fields}); fine-tuning needs a "
                                   "non-empty 'labels' field"))
    return out


def check_labelled(data, path):
    """Raise :class:`ManifestError` naming ``path`` and the first entries without labels."""
    bad = unlabelled_entries(data)
    if bad:
        more = f" (and {len(bad) - 3} more entries)" if len(bad) > 3 else ""
        details = "; ".join(f"entry {sid!r}: {reason}" for sid, reason in bad[:3])
        raise ManifestError(path, f"{len(bad)} of {len(data)} entries have no labels: "
                                  f"{details}{more}")


def _relative(value, root):
    if value is None:
        return None
    return os.path.relpath(value, root)


def write_manifest(data, path, fmt="original", relative=True):
    """Write entries (as returned by :func:`read_manifest`) to ``path``.

    ``fmt='original'`` writes the CAV-MAE ``{"data": [...]}`` JSON (labels
    joined with ``,``); ``'speechbrain'`` writes ``{id: {...}}`` JSON.
    Paths are written relative to the manifest folder when ``relative``.
    """
    root = os.path.dirname(os.path.abspath(path))
    out = {}
    for sample_id, entry in data.items():
        item = {k: v for k, v in entry.items() if v is not None}
        for key in PATH_KEYS:
            if key in item and relative:
                item[key] = _relative(item[key], root)
        item["labels"] = ",".join(entry.get("labels", []))
        out[sample_id] = item
    if fmt == "original":
        content = {"data": list(out.values())}
    elif fmt == "speechbrain":
        content = out
    else:
        raise ValueError(f"unknown manifest format {fmt!r}")
    atomic_write_json(path, content, indent=1)
