"""Training and evaluation data streamed from WebDataset shards.

:func:`build_shard_dataset` reads tar shards written by
:mod:`speechbrain_cavmae.tools.shard` (a brace pattern such as
``'shards/train-{000000..000511}.tar'``; local paths or any URL WebDataset opens) and
yields the items of :func:`speechbrain_cavmae.data.dataset.build_dataset` for the same
clips: the decoding, features, augmentation, mixup and bad-sample policy are those of
:class:`~speechbrain_cavmae.data.dataset.AVSampleLoader` (:class:`ShardSampleLoader`
only reads the sample's bytes instead of its files). Each item has one more key,
``position`` (``"<shard>/<key>"``), with which :class:`ShardLoader` records the
progress of an epoch.

A shard sample holds ``json`` (``id``, ``video_id``, ``labels``), ``flac`` or ``wav`` (the
16 kHz mono audio) and either ``frame_0.jpg`` ... ``frame_{n-1}.jpg`` (the extracted layout's
JPEG files, byte for byte) or ``video.<ext>`` (the clip itself, decoded on the fly).
Next to the shards, ``<prefix>-index.json`` lists each shard's sample count and sha256;
it defines the epoch.

Verification. Next to each shard ``<prefix>-NNNNNN.tar``, ``<prefix>-NNNNNN.members.sha256``
lists the sha256 of each of its tar members (``sha256sum`` format); the index records that
file's sha256. A shard is read as one stream (local file, ``file://``, ``pipe:``,
``http://``) that is hashed as it is read (no second read), and each member is hashed as it
comes out of the tar, so a sample is checked in full before it is handed on:

* a member whose bytes differ from the list makes its sample a
  :class:`~speechbrain_cavmae.data.errors.BadSampleError` naming the member
  (``<shard>:<key>.<field>``), raised or counted and skipped as ``on_bad_sample`` says;
* a shard that is not the one the index lists (a member not in the list, a sample
  description ``<key>.json`` that differs, members missing, or none of its samples
  matching) stops the run with a :class:`ShardError` naming the shard, whatever
  ``on_bad_sample`` says; a shard from another manifest is refused at its first sample
  (whose description differs), before any of it is used.

Every byte of a member is hashed once; tar headers are checked through the member names
and sizes only (their other fields do not reach training). Shards whose index has no
``members_sha256`` (written by an older version) are hashed as a whole while they are read
and checked against the index's sha256 when their end is reached, after their samples were
used (a warning says so when the data set is built); rerunning the same ``cavmae shard``
command adds the member lists (reading each shard once, checked against the index).

Splitting. Every epoch the shard list is shuffled with ``seed + epoch`` (the same on
every process), process ``r`` of ``R`` takes shards ``r, r + R, ...`` and DataLoader
worker ``w`` of ``W`` every ``W``-th of those; each worker streams its shards through a
shuffle buffer (``shuffle_buffer`` samples). Every sample of the epoch is read by exactly
one worker of one process. Under DDP every process runs the same number of steps: the
smallest number of batches of any process (computed from the index), so when the shards
do not split evenly a few samples of the larger processes wait for a later epoch (they
are other samples every epoch; equal shards and a shard count divisible by the number of
processes lose none).

Differences from the file layout, all unavoidable with streaming: the mixup partner is
drawn from the worker's shuffle buffer (not from the whole data set); a shuffled epoch's
order differs from the file path's; ``frame_source`` / ``audio_source`` and the audio
channel were chosen when the shards were written.

Example
-------
>>> expand_shards("shards/train-{000000..000002}.tar")
['shards/train-000000.tar', 'shards/train-000001.tar', 'shards/train-000002.tar']
>>> index_path_for("shards/train-000001.tar")
'shards/train-index.json'
>>> index_path_for("pipe:aws s3 cp s3://bucket/av/train-000001.tar -")
'pipe:aws s3 cp s3://bucket/av/train-index.json -'
>>> members_path_for("pipe:aws s3 cp s3://bucket/av/train-000001.tar -")
'pipe:aws s3 cp s3://bucket/av/train-000001.members.sha256 -'
"""

import contextlib
import hashlib
import io
import json
import logging
import math
import os
import random
import re

import torch
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks
from speechbrain.utils.distributed import if_main_process

from .dataset import (
    AVSampleLoader,
    BadSampleCounter,
    bad_sample,
    collate_av,
    label_table,
    output_keys,
    resolve_config,
)
from .errors import BadSampleError, ManifestError
from .frames import decode_image

logger = logging.getLogger(__name__)

INDEX_FORMAT = "speechbrain-cavmae-shards/1"
INDEX_SUFFIX = "-index.json"
#: ``<prefix>-NNNNNN.members.sha256``: the sha256 of each tar member of a shard.
MEMBERS_SUFFIX = ".members.sha256"
#: Marks a shard whose every sample was consumed (in the saved progress of an epoch).
ALL = "all"
#: The audio members a shard sample may have (``--audio_format`` of the shard tool).
AUDIO_FIELDS = ("flac", "wav")


class ShardError(RuntimeError):
    """A shard that cannot be read or does not match its index."""


def _webdataset():
    try:
        import webdataset
    except ImportError as exc:
        raise ImportError(
            "reading or writing shards needs the webdataset package: "
            "pip install 'speechbrain-cavmae[shards]' (or pip install webdataset)"
        ) from exc
    return webdataset


def expand_shards(pattern):
    """The shard paths/URLs of a brace pattern (or of a list of patterns)."""
    _webdataset()  # braceexpand comes with it
    from braceexpand import braceexpand

    patterns = [pattern] if isinstance(pattern, (str, os.PathLike)) else list(pattern)
    urls = [url for p in patterns for url in braceexpand(os.fspath(p))]
    if not urls:
        raise ValueError(f"{pattern!r}: no shards")
    return urls


_SHARD_FILE = re.compile(r"[^/\\\s'\"]+-\d+\.tar")


def shard_name(url):
    """A shard's file name (its key in the index).

    In a ``pipe:`` URL (a command that writes the shard to its output, e.g.
    ``pipe:aws s3 cp s3://bucket/train-000003.tar -``) the name is the command's
    ``<prefix>-<digits>.tar`` word.
    """
    if url.startswith("pipe:"):
        names = _SHARD_FILE.findall(url)
        if len(names) != 1:
            raise ValueError(f"{url!r}: a pipe: shard URL must name one <prefix>-NNNNNN.tar file")
        return names[0]
    return url.rstrip("/").rsplit("/", 1)[-1]


def index_path_for(url):
    """``<folder>/<prefix>-index.json`` of a shard ``<folder>/<prefix>-NNNNNN.tar``.

    A ``pipe:`` URL gives the same command with the shard's file name replaced by the
    index's, so the command that streams a shard also streams its index.
    """
    if url.startswith("pipe:"):
        name = shard_name(url)
        return url.replace(name, name.rsplit("-", 1)[0] + INDEX_SUFFIX)
    folder, _, name = url.rstrip("/").rpartition("/")
    prefix = name.rsplit("-", 1)[0]
    return f"{folder}/{prefix}{INDEX_SUFFIX}" if folder else prefix + INDEX_SUFFIX


def members_path_for(url):
    """``<folder>/<prefix>-NNNNNN.members.sha256`` of a shard ``<folder>/<prefix>-NNNNNN.tar``
    (for a ``pipe:`` URL, the same command with the shard's file name replaced)."""
    name = shard_name(url)
    members = name.removesuffix(".tar") + MEMBERS_SUFFIX
    if url.startswith("pipe:"):
        return url.replace(name, members)
    folder = url.rstrip("/").rpartition("/")[0]
    return f"{folder}/{members}" if folder else members


def _open(url, mode="rb"):
    if url.startswith("pipe:") or ("://" in url and not url.startswith("file://")):
        return _webdataset().gopen(url, mode)
    return open(url.removeprefix("file://"), mode)


def sha256_hex(data):
    """Hex sha256 of ``data`` (bytes)."""
    return hashlib.sha256(data).hexdigest()


def format_member_digests(digests):
    """``sha256sum`` lines of ``[(member name, hex sha256)]``."""
    return "".join(f"{digest}  {name}\n" for name, digest in digests)


class HashingReader(io.RawIOBase):
    """A read-only stream that hashes (sha256) every byte read through it (with
    ``hashing=False``, only reads)."""

    def __init__(self, stream, hashing=True):
        super().__init__()
        self.stream = stream
        self.digest = hashlib.sha256() if hashing else None

    def readable(self):
        return True

    def read(self, size=-1):
        data = self.stream.read(size)
        if self.digest is not None:
            self.digest.update(data)
        return data

    def readinto(self, buffer):
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def drain(self, chunk=1 << 20):
        """Read (and hash) what is left; returns the hex sha256 of the whole stream (None
        when not hashing)."""
        while self.read(chunk):
            pass
        return None if self.digest is None else self.digest.hexdigest()


@contextlib.contextmanager
def open_shard(url, hashing=True):
    """A :class:`HashingReader` of shard ``url`` (any URL of :func:`_open`). On a clean exit
    the stream is closed (a ``pipe:`` command that failed raises); after an error or an
    early stop it is closed quietly."""
    raw = _open(url)
    try:
        yield HashingReader(raw, hashing)
    except BaseException:
        with contextlib.suppress(Exception):
            raw.close()
        raise
    raw.close()


def shard_members(stream):
    """``{"fname", "data"}`` of each tar member of an open shard stream, in tar order."""
    return _webdataset().tariterators.tar_file_iterator(stream)


def member_digests(url):
    """``([(member name, hex sha256)], hex sha256 of the file)`` of a shard, read once (to
    add the member lists to shards written before them)."""
    with open_shard(url) as stream:
        digests = [(f["fname"], sha256_hex(f["data"])) for f in shard_members(stream)]
        return digests, stream.drain()


def _rewrite_hint(url):
    return ("rewrite it: rerun the cavmae shard command that wrote it (shards whose "
            f"checksum differs are rewritten) or copy the original {shard_name(url)}")


class ShardCheck:
    """Checks the members of one shard as they are read against its index entry.

    :meth:`members` passes the tar members on, hashing each; a member whose sha256 differs
    from the shard's member list marks its sample as damaged (:attr:`damaged`, key ->
    :class:`~speechbrain_cavmae.data.errors.BadSampleError`); a shard that is not the one
    the index lists raises :class:`ShardError`. :meth:`finish` checks the whole shard.

    Arguments
    ---------
    url : str
        The shard.
    entry : dict
        Its index entry (``name``, ``samples``, ``sha256``, optional ``members_sha256``).
    index_path : str
        The index (for messages).
    """

    def __init__(self, url, entry, index_path):
        self.url = url
        self.entry = entry
        self.index_path = index_path
        self.list_path = members_path_for(url)
        self.digests = self.read_list() if "members_sha256" in entry else None
        self.damaged = {}
        self.bad_keys = set()
        self.seen = set()

    def read_list(self):
        """The member list ``{name: hex sha256}``, checked against the index."""
        try:
            with _open(self.list_path) as handle:
                data = handle.read()
        except Exception as exc:
            raise ShardError(f"{self.url}: cannot read its member list {self.list_path} "
                             f"({exc}); copy it with the shard") from exc
        if sha256_hex(data) != self.entry["members_sha256"]:
            raise ShardError(f"{self.url}: its member list {self.list_path} differs from the "
                             f"one {self.index_path} lists (sha256); {_rewrite_hint(self.url)}")
        digests = {}
        for line in data.decode("utf8").splitlines():
            digest, _, name = line.partition("  ")
            digests[name] = digest
        return digests

    def members(self, files):
        """Pass the tar members ``files`` on (with ``__url__``), checking each."""
        for item in files:
            item["__url__"] = self.url
            if self.digests is not None:
                self.check(item["fname"], item["data"])
            yield item

    def check(self, name, data):
        expected = self.digests.get(name)
        if expected is None:
            raise ShardError(f"{self.url}: member {name} is not in its member list "
                             f"{self.list_path}: the shard is not the one {self.index_path} "
                             f"lists (replaced, or from another manifest); "
                             f"{_rewrite_hint(self.url)}")
        self.seen.add(name)
        if sha256_hex(data) == expected:
            return
        key, _, field = name.partition(".")
        if field == "json":
            raise ShardError(f"{self.url}: the description of sample {key} ({name}) differs "
                             f"from the one {self.list_path} lists: the shard is not the one "
                             f"{self.index_path} lists (replaced, or from another manifest); "
                             f"{_rewrite_hint(self.url)}")
        self.bad_keys.add(key)
        self.damaged.setdefault(key, BadSampleError(
            f"{self.url}:{name}", f"damaged: its bytes differ from the sha256 in "
            f"{self.list_path}; {_rewrite_hint(self.url)}"))

    def finish(self, file_sha256, samples):
        """After the whole shard (``samples`` read; ``file_sha256`` of its bytes, computed
        only for a shard without a member list, whose only check it is)."""
        if self.digests is not None:
            missing = sorted(set(self.digests) - self.seen)
            if missing:
                raise ShardError(f"{self.url}: {len(missing)} member(s) of its member list "
                                 f"{self.list_path} are missing, e.g. {missing[0]}; "
                                 f"{_rewrite_hint(self.url)}")
            if samples and len(self.bad_keys) == samples:
                raise ShardError(f"{self.url}: none of its {samples} samples matches its member "
                                 f"list {self.list_path}: the shard is not the one "
                                 f"{self.index_path} lists; {_rewrite_hint(self.url)}")
            return
        expected = self.entry.get("sha256")
        if expected and file_sha256 != expected:
            raise ShardError(f"{self.url}: its sha256 {file_sha256} differs from the "
                             f"{expected} of {self.index_path}: the shard is not the one the "
                             f"index lists (replaced, damaged or from another manifest); "
                             f"{_rewrite_hint(self.url)}")


class ShardIndex:
    """The index the shard tool writes: per shard its sample count and sha256.

    Arguments
    ---------
    content : dict
        The index JSON (``format``, ``config``, ``shards``: list of ``{"name",
        "samples", "sha256"}``, ``total``).
    path : str
        Where it was read from (for messages).
    """

    def __init__(self, content, path="<index>"):
        if content.get("format") != INDEX_FORMAT:
            raise ValueError(f"{path}: not a shard index of {INDEX_FORMAT}")
        self.content = content
        self.path = path
        self.config = content.get("config", {})
        self.entries = {s["name"]: s for s in content["shards"]}
        self.counts = {name: int(s["samples"]) for name, s in self.entries.items()}

    @classmethod
    def read(cls, path):
        """Read an index file (local path or URL)."""
        try:
            with _open(path) as handle:
                content = json.load(handle)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{path}: shard index not found (the shard tool writes it next to the "
                "shards: cavmae shard --manifest MANIFEST --output FOLDER)"
            ) from None
        return cls(content, path)

    @classmethod
    def for_urls(cls, urls):
        """The one index of a list of shards (all must be in it)."""
        paths = sorted({index_path_for(u) for u in urls})
        if len(paths) != 1:
            raise ValueError(f"the shards belong to several indexes: {paths}")
        index = cls.read(paths[0])
        missing = [u for u in urls if shard_name(u) not in index.counts]
        if missing:
            raise ValueError(f"{index.path} does not list {len(missing)} shard(s), "
                             f"e.g. {missing[0]}")
        return index

    def count(self, url):
        """Samples in shard ``url``."""
        return self.counts[shard_name(url)]

    def entry(self, url):
        """The index entry of shard ``url``."""
        return self.entries[shard_name(url)]

    def warn_unverified(self, urls):
        """Log a warning when shards of ``urls`` have no member list (written by an older
        version): they are checked only as a whole, at their end. Returns their number."""
        old = [u for u in urls if "members_sha256" not in self.entry(u)]
        if old:
            logger.warning(
                "%s: %d of %d shards (e.g. %s) were written without a member list "
                "(<shard>.members.sha256): their samples are not checked before they are used, "
                "each shard only as a whole at its end (against the index's sha256); rerun the "
                "cavmae shard command that wrote them to add the lists", self.path, len(old),
                len(urls), shard_name(old[0]))
        return len(old)

    def check_labelled(self, urls):
        """Raise :class:`~speechbrain_cavmae.data.errors.ManifestError` naming the index, the
        shards and their first samples without labels when the index says that samples of
        ``urls`` have none (what fine-tuning cannot use; the reason lists the manifest
        entry's fields, so that a misspelled ``labels`` shows).

        Returns
        -------
        bool
            True when the index recorded it for every shard, False when it did not (shards
            written by an older version): each sample is then checked as it is read.
        """
        entries = [self.entries[shard_name(u)] for u in urls]
        if any("unlabelled" not in e for e in entries):
            return False
        bad = [e for e in entries if e["unlabelled"]]
        if bad:
            details = "; ".join(
                f"shard {e['name']}, sample {e['unlabelled_example']['id']!r} (key "
                f"{e['unlabelled_example']['key']}): {e['unlabelled_example']['problem']}"
                for e in bad[:3])
            more = f" (and {len(bad) - 3} more shards)" if len(bad) > 3 else ""
            raise ManifestError(
                self.path, f"{sum(e['unlabelled'] for e in bad)} of "
                f"{sum(e['samples'] for e in entries)} samples of the shards have no labels: "
                f"{details}{more}; write the shards from a manifest whose entries have labels")
        return True


class ShardSampleLoader(AVSampleLoader):
    """:class:`~speechbrain_cavmae.data.dataset.AVSampleLoader` reading a shard sample's
    bytes: ``self.data`` maps the sample's id to its record (the shard sample plus
    ``id``, ``video_id``, ``labels``, ``position``); ``self.pool`` holds the records mixup
    partners are drawn from (the shuffle buffer)."""

    def __init__(self, config, train, label_table=None, source="<shards>",
                 require_labels=False):
        super().__init__({}, config, train, label_table, source)
        self.pool = []
        self.require_labels = require_labels

    def check_labels(self, sid):
        """As for files, and with ``require_labels`` (fine-tuning) the sample must have a
        label: one without is a :class:`~speechbrain_cavmae.data.errors.ManifestError`
        naming its JSON member and fields, whatever the bad-sample policy (as a manifest
        entry without labels; the index normally reports it before reading starts). A
        record that failed its checks (a damaged member, no usable description) raises its
        error here, so that it is not used as a mixup partner either."""
        record = self.data[sid]
        if "error" in record:
            raise record["error"]
        if self.require_labels and not record["labels"]:
            meta = json.loads(record["json"])
            fields = ", ".join(sorted(k for k in meta if meta[k] not in (None, "", [])))
            raise ManifestError(self.member(sid, "json"), f"sample {sid!r}: no labels (its "
                                f"fields: {fields}); fine-tuning needs a non-empty 'labels' "
                                "field: write the shards from a manifest whose entries have "
                                "labels")
        super().check_labels(sid)

    def member(self, sid, field):
        """``<shard>:<key>.<field>``: the tar member, as named in errors."""
        record = self.data[sid]
        return f"{record['__url__']}:{record['__key__']}.{field}"

    def audio_field(self, sid):
        """``flac`` or ``wav``: the sample's audio member."""
        record = self.data[sid]
        for field in AUDIO_FIELDS:
            if field in record:
                return field
        raise BadSampleError(self.member(sid, "json"), "no audio (flac or wav) in the shard "
                             "sample", sid)

    def audio_path(self, sid):
        return self.member(sid, self.audio_field(sid))

    def audio_input(self, sid):
        field = self.audio_field(sid)
        return self.data[sid][field], self.member(sid, field)

    def frame_source(self, sid):
        record = self.data[sid]
        source = self.cfg["frame_source"]
        videos = sorted(k for k in record if k.startswith("video."))
        if source == "extracted" or (source == "auto" and "frame_0.jpg" in record):
            if "frame_0.jpg" not in record:
                raise BadSampleError(self.member(sid, "json"),
                                     "no extracted frames (frame_*.jpg) in the shard sample", sid)
            return "extracted", record
        if not videos:
            raise BadSampleError(self.member(sid, "json"), "no video or extracted frames in the "
                                 f"shard sample (frame_source={source!r})", sid)
        clip = io.BytesIO(record[videos[0]])
        clip.name = self.member(sid, videos[0])
        return "video", clip

    def extracted_frame(self, sid, where, k):
        field = f"frame_{int(k)}.jpg"
        if field not in where:
            raise BadSampleError(self.member(sid, field), f"extracted frame {k} not found", sid)
        return decode_image(where[field], self.member(sid, field))

    def draw_partner(self):
        record = self.pool[int(torch.randint(0, len(self.pool), ()))]
        self.data[record["id"]] = record
        return record["id"]


class ShardDataset(torch.utils.data.IterableDataset):
    """The items of :class:`~speechbrain_cavmae.data.dataset.AVDataset`, streamed from
    shards (see the module docstring). Build it with :func:`build_shard_dataset`, read it
    with :class:`ShardLoader`.

    Arguments
    ---------
    urls : list of str
        The shards.
    index : ShardIndex
        Their index.
    loader : ShardSampleLoader
        Turns a record into an item.
    keys : list of str
        Output keys (``position`` is added).
    on_bad_sample : str
        'raise' or 'skip'.
    counter : BadSampleCounter
        Counts the skipped samples.
    shuffle : bool
        Shuffle the shards every epoch and the samples in a buffer.
    shuffle_buffer : int
        Samples in each worker's shuffle buffer.
    seed : int
        Seed of the shuffling.
    split_ranks : bool
        Split the shards across DDP processes (training); otherwise every process
        reads them all (evaluation, as the file path does).
    rank, world_size : int, optional
        This process and the number of processes (default: from ``torch.distributed``).
    """

    def __init__(self, urls, index, loader, keys, on_bad_sample="raise", counter=None,
                 shuffle=False, shuffle_buffer=1000, seed=0, split_ranks=True, rank=None,
                 world_size=None):
        super().__init__()
        self.urls = list(urls)
        self.index = index
        self.loader = loader
        self.keys = list(keys)
        self.on_bad_sample = on_bad_sample
        self.bad_samples = counter if counter is not None else BadSampleCounter()
        self.shuffle = bool(shuffle)
        self.shuffle_buffer = int(shuffle_buffer)
        self.seed = int(seed)
        self.split_ranks = split_ranks
        self.rank, self.world_size = rank, world_size
        self.epoch = 1
        self.consumed = {}
        if loader.train and loader.cfg["mixup"] > 0 and not (shuffle and shuffle_buffer > 1):
            logger.warning("mixup partners come from the shuffle buffer: without shuffling, "
                           "each sample is mixed with itself")

    @property
    def label_table(self):
        return self.loader.table

    def __len__(self):
        """Samples in the whole epoch (the index's total)."""
        return sum(self.index.count(u) for u in self.urls)

    # ------------------------------------------------------------------ planning
    def ranks(self):
        """(rank, world size) of the split."""
        if not self.split_ranks:
            return 0, 1
        if self.world_size is not None:
            return int(self.rank or 0), int(self.world_size)
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def set_epoch(self, epoch, consumed=None):
        """Plan epoch ``epoch``, leaving out the samples of ``consumed`` (``{shard name:
        set of keys or ALL}``: the part of the epoch already trained on)."""
        self.epoch = int(epoch)
        self.consumed = dict(consumed or {})
        self.rank, self.world_size = self.ranks()

    def plan(self, num_workers, epoch=None):
        """``plan[rank][worker]``: the shards each worker of each process reads."""
        order = list(self.urls)
        if self.shuffle:
            random.Random(f"{self.seed}/{self.epoch if epoch is None else epoch}").shuffle(order)
        _, world = self.ranks()
        workers = max(int(num_workers), 1)
        return [[order[r::world][w::workers] for w in range(workers)] for r in range(world)]

    def remaining(self, url, consumed=None):
        """Samples of shard ``url`` still to read this epoch."""
        done = (self.consumed if consumed is None else consumed).get(shard_name(url), ())
        return 0 if done == ALL else self.index.count(url) - len(done)

    def num_batches(self, batch_size, num_workers, drop_last, epoch=None, consumed=None):
        """Batches of the epoch on this process: with DDP the smallest number of any
        process, so that every process runs the same number of steps."""
        per_rank = []
        for workers in self.plan(num_workers, epoch):
            n = 0
            for urls in workers:
                count = sum(self.remaining(u, consumed) for u in urls)
                n += count // batch_size if drop_last else math.ceil(count / batch_size)
            per_rank.append(n)
        rank, _ = self.ranks()
        return min(per_rank) if self.split_ranks else per_rank[rank]

    # ------------------------------------------------------------------ reading
    def records(self, urls):
        """The records of ``urls`` in order, without the consumed ones; checks each
        shard against its index entry as it is read (see the module docstring): a record
        whose sample failed has an ``error``."""
        wds = _webdataset()
        for url in urls:
            done = self.consumed.get(shard_name(url), ())
            if done == ALL:
                continue
            seen = 0
            try:
                check = ShardCheck(url, self.index.entry(url), self.index.path)
                with open_shard(url, hashing=check.digests is None) as stream:
                    files = check.members(shard_members(stream))
                    for sample in wds.tariterators.group_by_keys(files):
                        seen += 1
                        key = sample["__key__"]
                        damaged = check.damaged.pop(key, None)
                        if key not in done:
                            record = self.record(sample, url)
                            if damaged is not None:
                                record["error"] = damaged
                            yield record
                    file_sha256 = stream.drain()
            except (ShardError, GeneratorExit):
                raise
            except Exception as exc:
                raise ShardError(f"{url}: cannot read the shard ({exc})") from exc
            if seen != self.index.count(url):
                raise ShardError(f"{url}: {seen} samples, but {self.index.path} lists "
                                 f"{self.index.count(url)}; rewrite the shard")
            check.finish(file_sha256, seen)

    @staticmethod
    def record(sample, url):
        """A shard sample with ``id``, ``video_id``, ``labels`` and ``position``."""
        record = dict(sample, __url__=url)
        record["position"] = f"{shard_name(url)}/{sample['__key__']}"
        try:
            meta = json.loads(sample["json"])
            record.update(id=str(meta["id"]), video_id=str(meta.get("video_id", meta["id"])),
                          labels=list(meta.get("labels", [])))
        except (KeyError, ValueError, TypeError) as exc:
            record.update(id=sample["__key__"], labels=[],
                          error=BadSampleError(f"{url}:{sample['__key__']}.json",
                                               f"no usable sample description ({exc!r})"))
        return record

    def shuffled(self, records, rng):
        """Shuffle-buffer order; the buffer is the loader's mixup pool."""
        buffer = self.loader.pool = []
        for record in records:
            if len(buffer) < self.shuffle_buffer:
                buffer.append(record)
                continue
            i = rng.randrange(len(buffer))
            out, buffer[i] = buffer[i], record
            yield out
        rng.shuffle(buffer)
        while buffer:
            yield buffer[-1]  # still in the pool while its item is made
            buffer.pop()

    def item(self, record):
        """The item of one record (or the skipped-sample marker)."""
        sid = record["id"]
        loader = self.loader
        loader.data = {sid: record}
        if not (self.shuffle and self.shuffle_buffer > 1):
            loader.pool = [record]
        try:
            if "error" in record:
                raise record["error"]
            out = loader(sid)
        except BadSampleError as err:
            return bad_sample(err, sid, self.on_bad_sample, self.bad_samples, record["position"])
        item = {key: sid if key == "id" else out[key] for key in self.keys}
        item["position"] = record["position"]
        return item

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        rank, _ = self.ranks()
        urls = self.plan(workers)[rank][worker]
        records = self.records(urls)
        if self.shuffle and self.shuffle_buffer > 1:
            rng = random.Random(f"{self.seed}/{self.epoch}/{rank}/{worker}")
            records = self.shuffled(records, rng)
        for record in records:
            yield self.item(record)


def build_shard_dataset(pattern, label_csv=None, config=None, train=True, counter=None,
                        shuffle=False, shuffle_buffer=1000, seed=0, split_ranks=None,
                        rank=None, world_size=None, require_labels=None):
    """The shard counterpart of :func:`~speechbrain_cavmae.data.dataset.build_dataset`.

    Arguments
    ---------
    pattern : str or list of str
        Brace pattern(s) of the shards (paths or URLs); the index
        ``<folder>/<prefix>-index.json`` must be next to them.
    label_csv, config, train, counter
        As for ``build_dataset``.
    shuffle, shuffle_buffer, seed
        Shuffling of the shards and samples (see :class:`ShardDataset`).
    split_ranks : bool, optional
        Split the shards across DDP processes (default: when ``train``).
    rank, world_size : int, optional
        Override the DDP rank and world size.
    require_labels : bool, optional
        Every sample must have at least one label (default: when a label table is given;
        the recipes require them for fine-tuning only): checked in the index before
        reading (:meth:`ShardIndex.check_labelled`) and on each sample as it is read.

    Returns
    -------
    ShardDataset

    Raises
    ------
    ManifestError
        With ``require_labels``, samples without labels.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_cavmae.data.toy import generate_toy_dataset
    >>> from speechbrain_cavmae.data.shard_writer import shard_manifest
    >>> root = tempfile.mkdtemp()
    >>> toy = generate_toy_dataset(root, n_train=6, n_valid=2, n_test=2, n_classes=2)
    >>> _ = shard_manifest(toy["train"], root + "/shards", shard_size=4)
    >>> data = build_shard_dataset(root + "/shards/train-{000000..000001}.tar",
    ...                            toy["label_csv"], {"audio_length": 96, "image_size": 64})
    >>> loader = ShardLoader(data, batch_size=4)
    >>> batches = list(loader)
    >>> len(loader), [len(b.id) for b in batches], tuple(batches[0].fbank.data.shape)
    (2, [4, 2], (4, 96, 128))
    """
    cfg = resolve_config(config, train)
    urls = expand_shards(pattern)
    index = ShardIndex.for_urls(urls)
    index.warn_unverified(urls)
    written = index.config
    if "audio_channel" in written and written["audio_channel"] != cfg["audio_channel"]:
        raise ValueError(
            f"{index.path}: the shards hold audio channel {written['audio_channel']!r}, the "
            f"data configuration asks for {cfg['audio_channel']!r}; write the shards with "
            "--audio_channel accordingly"
        )
    table = label_table(label_csv)
    labelled = table is not None if require_labels is None else bool(require_labels)
    if labelled:
        index.check_labelled(urls)
    loader = ShardSampleLoader(cfg, train, table, os.fspath(pattern) if isinstance(pattern, str)
                               else "<shards>", require_labels=labelled)
    dataset = ShardDataset(
        urls, index, loader, output_keys(cfg, train, table), cfg["on_bad_sample"], counter,
        shuffle=shuffle, shuffle_buffer=shuffle_buffer, seed=seed,
        split_ranks=train if split_ranks is None else split_ranks, rank=rank,
        world_size=world_size,
    )
    logger.info("%s: %d shards, %d samples, %s mode", pattern, len(urls), len(dataset),
                "train" if train else "eval")
    return dataset


class ShardLoader(torch.utils.data.DataLoader):
    """``DataLoader`` of a :class:`ShardDataset` that keeps the epoch's progress.

    Its length is the number of batches of the epoch (:meth:`ShardDataset.num_batches`,
    the same on every DDP process); the iteration stops there. It records the position
    (shard and key) of every sample it hands out, skipped ones included; as a checkpoint
    recoverable (``checkpointer.add_recoverable``) it saves, gathered from every process,
    the epoch number and those positions (a fully read shard as one entry). A run resumed
    from an intra-epoch checkpoint restarts the epoch with the same shard plan and leaves
    out the samples already trained on: nothing is repeated (samples that were in the
    shuffle buffers or in flight are read again, as they were not trained on) and no
    shard has to be read twice except, per worker, the shards that were partly consumed.

    Arguments
    ---------
    dataset : ShardDataset
    batch_size, num_workers, drop_last, collate_fn, ...
        As for ``torch.utils.data.DataLoader`` (``shuffle`` is the dataset's; workers are
        not persistent: the plan of each epoch goes to them when it starts).

    See :func:`build_shard_dataset` for an example.
    """

    def __init__(self, dataset, batch_size=1, num_workers=0, drop_last=False, **kwargs):
        kwargs.pop("shuffle", None)
        kwargs.pop("persistent_workers", None)
        kwargs.setdefault("collate_fn", collate_av)
        super().__init__(dataset, batch_size=batch_size, num_workers=num_workers,
                         drop_last=drop_last, **kwargs)
        self.epoch = 0
        self.consumed = {}
        self._restored = None
        self._active = False

    def _next(self):
        if self._restored is not None:
            return self._restored
        return self.epoch + 1, {}

    def __len__(self):
        """Batches of the coming (or current) epoch on this process."""
        epoch, consumed = (self.epoch, self.dataset.consumed) if self._active else self._next()
        return self.dataset.num_batches(self.batch_size, self.num_workers, self.drop_last,
                                        epoch, consumed)

    def __iter__(self):
        epoch, consumed = self._next()
        self._restored = None
        self.epoch = epoch
        self.consumed = {k: (v if v == ALL else set(v)) for k, v in consumed.items()}
        self.dataset.set_epoch(epoch, {k: (v if v == ALL else frozenset(v))
                                       for k, v in self.consumed.items()})
        self._active = True
        total = len(self)
        if consumed:
            logger.info("epoch %d resumed: %d samples already trained on are left out, "
                        "%d batches to go", epoch, sum(
                            self.dataset.index.counts[k] if v == ALL else len(v)
                            for k, v in self.consumed.items()), total)
        iterator = super().__iter__()
        try:
            for step in range(total):
                try:
                    batch = next(iterator)
                except StopIteration:
                    raise ShardError(f"the shards gave {step} batches, the index promised "
                                     f"{total}") from None
                self.record(batch)
                yield batch
        finally:
            self._active = False
            shutdown = getattr(iterator, "_shutdown_workers", None)
            if shutdown is not None:
                shutdown()

    def record(self, batch):
        """Mark the batch's samples (skipped ones too) as consumed."""
        if batch is None:
            return
        positions = list(getattr(batch, "position", []))
        positions += [s.position for s in getattr(batch, "skipped", []) if s.position]
        for position in positions:
            name, key = position.rsplit("/", 1)
            keys = self.consumed.setdefault(name, set())
            if keys != ALL:
                keys.add(key)
                if len(keys) == self.dataset.index.counts.get(name, -1):
                    self.consumed[name] = ALL

    @mark_as_saver
    def save(self, path):
        """Save the epoch and the consumed positions of every process (call on all)."""
        consumed = {k: (v if v == ALL else sorted(v)) for k, v in self.consumed.items()}
        dist = torch.distributed
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, consumed)
            merged = {}
            for part in gathered:
                for name, keys in part.items():
                    have = merged.setdefault(name, set())
                    if have == ALL or keys == ALL:
                        merged[name] = ALL
                    else:
                        have.update(keys)
            consumed = {k: (v if v == ALL else sorted(v)) for k, v in merged.items()}
        if if_main_process():
            with open(path, "w", encoding="utf8") as handle:
                json.dump({"epoch": self.epoch, "consumed": consumed}, handle)

    @mark_as_loader
    def load(self, path, end_of_epoch=False):
        """Restore the epoch; from an intra-epoch checkpoint also its consumed samples."""
        with open(path, encoding="utf8") as handle:
            state = json.load(handle)
        self.epoch = int(state["epoch"])
        self._restored = None if end_of_epoch else (self.epoch, state["consumed"])


register_checkpoint_hooks(ShardLoader, save_on_main_only=False)


__all__ = [
    "ALL",
    "INDEX_FORMAT",
    "MEMBERS_SUFFIX",
    "ShardDataset",
    "ShardError",
    "ShardIndex",
    "ShardLoader",
    "ShardCheck",
    "ShardSampleLoader",
    "build_shard_dataset",
    "expand_shards",
    "index_path_for",
    "members_path_for",
    "shard_name",
]
