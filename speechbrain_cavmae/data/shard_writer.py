"""Write a manifest's clips as WebDataset tar shards, with an index.

On the command line (:mod:`speechbrain_cavmae.tools.shard`)::

    cavmae shard MANIFEST OUT_DIR [--shard_size 1000]
        [--prefix train] [--num_workers N] [--on_bad_sample raise|skip]
        [--frame_source auto|extracted|video] [--audio_source auto|wav|video]
        [--audio_channel 0] [--sample_rate 16000] [--audio_format flac|wav]
        [--n_frames 10] [--label_csv LABELS]

Reads any manifest the project accepts (:mod:`speechbrain_cavmae.data.manifest`) and
writes ``OUT_DIR/<prefix>-000000.tar``, ``-000001.tar``, ...: shard ``i`` holds the
manifest's samples ``i * shard_size`` to ``(i + 1) * shard_size - 1``, in order, each as
``<key>.json`` (``id``, ``video_id``, ``labels``), ``<key>.flac`` (the audio as the
data pipeline loads it: 16 kHz, one channel; 16-bit when that is exact, as for 16-bit
16 kHz wav files, otherwise 24-bit; ``--audio_format wav`` writes ``<key>.wav`` instead,
larger but faster to decode, 32-bit float when 16 bits are not exact) and the frames:
the extracted layout's JPEG files byte for byte (``<key>.frame_0.jpg`` ...) or, for
clips decoded on the fly, the video file itself (``<key>.video.mp4``). Keys are the
manifest positions (``%09d``). This is the tar layout of SpeechBrain's
``create_wds_shards.py`` (webdataset's ``TarWriter``, which its ``ShardWriter`` wraps;
here each shard is written by one process in full).

Next to each shard, ``<prefix>-NNNNNN.members.sha256`` lists the sha256 of each of its tar
members (``sha256sum`` format, in tar order), with which the reader checks every sample
before it is used (:mod:`speechbrain_cavmae.data.shards`).

``OUT_DIR/<prefix>-index.json`` lists every shard's sample count, sha256 and the sha256 of
its member list (``members_sha256``), the total,
the configuration and the bad samples, and for each shard how many of its samples have no
labels (``unlabelled``, with the first one's id, key and manifest fields: fine-tuning from
the shards refuses them before it starts, as it refuses such manifest entries). The index
is rewritten after every finished shard. A shard is written as ``<name>.partial`` and
renamed when complete, so a killed run leaves no truncated shard; run the same command
again to resume: shards listed in the index whose file still has the listed checksum are
kept (and given a member list when they were written without one: shards written by an
older version get theirs this way, each read once and checked against the index's sha256).
``--num_workers`` processes write whole shards in parallel.

Bad samples (a missing or undecodable file, a clip shorter than 25 ms, a label missing
from ``--label_csv``) are reported as ``validate`` reports them, with the file and the
reason: ``--on_bad_sample raise`` (default) stops at the first one with exit status 1,
``skip`` leaves them out of the shards, logs each, lists them in the index and prints a
table at the end.

"""

import hashlib
import io
import json
import logging
import os
import tarfile

import numpy as np

from speechbrain_cavmae.data.dataset import AVSampleLoader, resolve_config
from speechbrain_cavmae.data.errors import BadSampleError
from speechbrain_cavmae.data.files import atomic_write_text
from speechbrain_cavmae.data.pool import process_pool
from speechbrain_cavmae.data.frames import extracted_frame_path, load_extracted_frame, load_video_frames
from speechbrain_cavmae.data.manifest import LabelTable, read_manifest, unlabelled_entries
from speechbrain_cavmae.data.shards import (
    INDEX_FORMAT,
    INDEX_SUFFIX,
    _webdataset,
    format_member_digests,
    member_digests,
    members_path_for,
    sha256_hex,
)

logger = logging.getLogger(__name__)

_STATE = {}


def file_sha256(path, chunk=1 << 20):
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def write_member_list(shard_path, digests):
    """Write ``<shard>.members.sha256`` (``[(member name, hex sha256)]``) atomically next to
    the shard; returns the list's own sha256 (the index's ``members_sha256``)."""
    text = format_member_digests(digests)
    atomic_write_text(members_path_for(shard_path), text)
    return sha256_hex(text.encode("utf8"))


def encode_audio(wav, sample_rate, audio_format="flac"):
    """FLAC or WAV bytes of a float waveform: 16-bit when every sample is a 16-bit value
    (decoding then gives the waveform back exactly, as for 16-bit wav sources); otherwise
    24-bit FLAC (within 2**-23) or 32-bit float WAV (exact).

    Example
    -------
    >>> import torch, soundfile
    >>> wav = torch.tensor([0.0, 0.5, -0.25])
    >>> data, rate = soundfile.read(io.BytesIO(encode_audio(wav, 16000)), dtype="float32")
    >>> data.tolist(), rate
    ([0.0, 0.5, -0.25], 16000)
    """
    import soundfile

    data = wav.numpy()
    scaled = data.astype(np.float64) * 32768.0
    exact = np.array_equal(scaled, np.round(scaled)) and np.abs(scaled).max(initial=0) <= 32767
    buffer = io.BytesIO()
    fmt = {"flac": "FLAC", "wav": "WAV"}[audio_format]
    if exact:
        soundfile.write(buffer, scaled.astype(np.int16), sample_rate, format=fmt,
                        subtype="PCM_16")
    elif audio_format == "flac":
        soundfile.write(buffer, np.clip(data, -1.0, 1.0), sample_rate, format=fmt,
                        subtype="PCM_24")
    else:
        soundfile.write(buffer, data, sample_rate, format=fmt, subtype="FLOAT")
    return buffer.getvalue()


def sample_fields(loader, sid, audio_format="flac"):
    """The tar members of one sample (without ``__key__``); raises BadSampleError."""
    cfg = loader.cfg
    entry = loader.data[sid]
    loader.check_labels(sid)
    fields = {"json": json.dumps({"id": sid, "video_id": entry["video_id"],
                                  "labels": list(entry["labels"])}).encode("utf8")}
    fields[audio_format] = encode_audio(loader.waveform(sid, whole=True), cfg["sample_rate"],
                                         audio_format)
    kind, where = loader.frame_source(sid)
    if kind == "extracted":
        for i in range(cfg["n_frames"]):
            load_extracted_frame(where, entry["video_id"], i)  # must decode
            with open(extracted_frame_path(where, entry["video_id"], i), "rb") as handle:
                fields[f"frame_{i}.jpg"] = handle.read()
    else:
        load_video_frames(where, cfg["n_frames"], indices=[0, cfg["n_frames"] - 1])
        ext = os.path.splitext(where)[1].lstrip(".").lower() or "mp4"
        with open(where, "rb") as handle:
            fields[f"video.{ext}"] = handle.read()
    return fields


def _init(data, config, table, manifest, audio_format="flac"):
    _STATE["loader"] = AVSampleLoader(data, config, False, table, manifest)
    _STATE["audio_format"] = audio_format


def write_shard(job):
    """Write one shard: ``job`` = (path, [(key, sid)], on_bad_sample). Returns its index
    entry and the bad samples [(id, file, problem)]."""
    path, samples, policy = job
    loader = _STATE["loader"]
    wds = _webdataset()
    partial = path + ".partial"
    bad, count, unlabelled, digests = [], 0, [], []
    with open(partial, "wb") as stream:
        writer = wds.TarWriter(stream, encoder=False, mtime=0)  # an int: no pax headers
        for key, sid in samples:
            try:
                fields = sample_fields(loader, sid, _STATE["audio_format"])
            except BadSampleError as err:
                err = err if err.sample_id is not None else err.with_id(sid)
                if policy == "raise":
                    writer.close()
                    os.remove(partial)
                    raise err from None
                logger.warning("skipping bad sample: %s", err)
                bad.append((sid, err.path, err.reason))
                continue
            writer.write({"__key__": key, **fields})
            digests += [(f"{key}.{field}", sha256_hex(fields[field])) for field in sorted(fields)]
            count += 1
            unlabelled += [(key, sid, reason)
                           for sid, reason in unlabelled_entries({sid: loader.data[sid]})]
        writer.close()
    members = write_member_list(path, digests)
    os.replace(partial, path)
    entry = {"name": os.path.basename(path), "samples": count, "sha256": file_sha256(path),
             "members_sha256": members, "bad": len(bad), "unlabelled": len(unlabelled)}
    if unlabelled:
        key, sid, reason = unlabelled[0]
        entry["unlabelled_example"] = {"id": sid, "key": key, "problem": reason}
    return entry, bad


def plan_shards(ids, shard_size, out_dir, prefix):
    """[(shard path, [(key, id)])]: consecutive manifest positions per shard."""
    jobs = []
    for start in range(0, len(ids), shard_size):
        name = f"{prefix}-{start // shard_size:06d}.tar"
        end = min(start + shard_size, len(ids))
        samples = [(f"{i:09d}", ids[i]) for i in range(start, end)]
        jobs.append((os.path.join(out_dir, name), samples))
    return jobs


def manifest_sha256(data):
    """Checksum of the manifest's normalised content (ids, files, labels)."""
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf8")).hexdigest()


def write_index(path, header, entries, bad, complete):
    """Write the index atomically."""
    shards = [entries[k] for k in sorted(entries)]
    content = dict(header, shards=shards, total=sum(s["samples"] for s in shards),
                   bad_samples=[{"id": i, "file": f, "problem": p, "shard": n}
                                for i, f, p, n in bad],
                   complete=complete)
    tmp = path + ".partial"
    with open(tmp, "w", encoding="utf8") as handle:
        json.dump(content, handle, indent=1)
    os.replace(tmp, path)
    return content


def finished_shards(index_path, header):
    """Entries (by name) and bad samples of the shards a previous run finished, checked."""
    if not os.path.isfile(index_path):
        return {}, []
    with open(index_path, encoding="utf8") as handle:
        old = json.load(handle)
    same = {k: old.get(k) for k in header} == header
    if not same:
        raise ValueError(
            f"{index_path}: written from another manifest or with other settings "
            "(shard_size, prefix, configuration); use another OUT_DIR or delete it"
        )
    folder = os.path.dirname(index_path)
    kept, names = {}, set()
    for entry in old.get("shards", []):
        path = os.path.join(folder, entry["name"])
        entry = checked_entry(path, entry)
        if entry is not None:
            kept[entry["name"]] = entry
            names.add(entry["name"])
        else:
            logger.warning("%s: missing or checksum differs; rewriting it", path)
    bad = [(b["id"], b["file"], b["problem"], b["shard"]) for b in old.get("bad_samples", [])
           if b.get("shard") in names]
    return kept, bad


def checked_entry(path, entry):
    """The index entry of a finished shard whose file still has the listed sha256 (with
    a member list, written from the shard when missing, outdated or not in the entry), or
    None."""
    if not os.path.isfile(path):
        return None
    listed = members_path_for(path)
    if (entry.get("members_sha256") and os.path.isfile(listed)
            and file_sha256(listed) == entry["members_sha256"]):
        return entry if file_sha256(path) == entry["sha256"] else None
    try:
        digests, sha256 = member_digests(path)
    except (OSError, tarfile.TarError) as exc:  # an unreadable shard is rewritten
        logger.warning("%s: cannot read it (%s)", path, exc)
        return None
    if sha256 != entry["sha256"]:
        return None
    logger.info("%s: member list written (the shard has the index's sha256)", listed)
    return dict(entry, members_sha256=write_member_list(path, digests))


def shard_manifest(manifest, out_dir, shard_size=1000, prefix="train", num_workers=1,
                   on_bad_sample="raise", config=None, label_csv=None, audio_format="flac"):
    """Write the shards and the index of ``manifest`` (see the module docstring).

    Returns
    -------
    dict
        The index content (``shards``, ``total``, ``bad_samples``, ...).
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    if audio_format not in ("flac", "wav"):
        raise ValueError(f"audio_format must be 'flac' or 'wav', got {audio_format!r}")
    if on_bad_sample not in ("raise", "skip"):
        raise ValueError(f"on_bad_sample must be 'raise' or 'skip', got {on_bad_sample!r}")
    cfg = resolve_config(config, train=False)
    data = read_manifest(manifest)
    if not data:
        raise ValueError(f"{manifest}: manifest has no entries")
    table = LabelTable.from_csv(label_csv) if label_csv else None
    os.makedirs(out_dir, exist_ok=True)
    written = {k: cfg[k] for k in ("sample_rate", "audio_channel", "n_frames", "frame_source",
                                    "audio_source")}
    written["audio_format"] = audio_format
    header = {"format": INDEX_FORMAT, "prefix": prefix, "shard_size": int(shard_size),
              "manifest_sha256": manifest_sha256(data), "config": written}
    index_path = os.path.join(out_dir, prefix + INDEX_SUFFIX)
    entries, bad = finished_shards(index_path, header)
    jobs = [(path, samples, on_bad_sample)
            for path, samples in plan_shards(list(data), shard_size, out_dir, prefix)
            if os.path.basename(path) not in entries]
    if entries:
        logger.info("%s: %d shard(s) already complete, %d to write", out_dir, len(entries),
                    len(jobs))
    header_info = dict(header, manifest=os.path.abspath(manifest))

    def done(result):
        entry, shard_bad = result
        entries[entry["name"]] = entry
        bad.extend((*b, entry["name"]) for b in shard_bad)
        write_index(index_path, header_info, entries, bad, False)
        logger.info("wrote %s (%d samples, %d bad)", entry["name"], entry["samples"],
                    len(shard_bad))

    init = (data, cfg, table, os.fspath(manifest), audio_format)
    if num_workers <= 1:
        _init(*init)
        for job in jobs:
            done(write_shard(job))
    else:
        with process_pool(num_workers, initializer=_init, initargs=init) as pool:
            for result in pool.map(write_shard, jobs):
                done(result)
    order = {sid: i for i, sid in enumerate(data)}
    bad.sort(key=lambda b: order.get(b[0], -1))
    return write_index(index_path, header_info, entries, bad, True)
