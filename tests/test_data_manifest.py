"""Label tables and the three manifest formats."""

import json
import os

import pytest
import torch

from media import SHARED_SAMPLES, write_label_csv
from speechbrain_cavmae.data.manifest import (
    LabelTable,
    read_manifest,
    read_original_manifest,
    split_labels,
    write_manifest,
)


def test_label_table_from_csv(tmp_path):
    path = write_label_csv(str(tmp_path / "labels.csv"), ["/m/a", "/m/b", "/m/c"])
    table = LabelTable.from_csv(path)
    assert table.num_classes == 3 and table.mids == ["/m/a", "/m/b", "/m/c"]
    assert table.encode(["/m/c", "/m/a"]).tolist() == [1.0, 0.0, 1.0]
    assert table.encode(["name 1"]).tolist() == [0.0, 1.0, 0.0]  # display names work too
    assert table.decode(torch.tensor([0.9, 0.1, 0.6])) == ["/m/a", "/m/c"]
    with pytest.raises(KeyError, match="'/m/zz' not in .*labels.csv"):
        table.encode(["/m/zz"])
    out = str(tmp_path / "copy.csv")
    table.to_csv(out)
    assert LabelTable.from_csv(out).mids == table.mids


def test_label_table_bad_csv(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("index,name\n0,x\n")
    with pytest.raises(ValueError, match="lacks column"):
        LabelTable.from_csv(str(bad))
    gap = tmp_path / "gap.csv"
    gap.write_text("index,mid,display_name\n0,/m/a,A\n2,/m/b,B\n")
    with pytest.raises(ValueError, match="not 0..1"):
        LabelTable.from_csv(str(gap))


@pytest.mark.skipif(not os.path.isdir(SHARED_SAMPLES), reason="../shared/samples not present")
def test_audioset_label_csv():
    table = LabelTable.from_csv(os.path.join(SHARED_SAMPLES, "class_labels_indices_as.csv"))
    assert table.num_classes == 527
    assert table.mids[0] == "/m/09x0r" and table.names[1] == "Male speech, man speaking"


def test_original_manifest_relative_paths_and_labels(tmp_path):
    sub = tmp_path / "lists"
    sub.mkdir()
    path = sub / "train.json"
    path.write_text(json.dumps({"data": [
        {"video_id": "v1", "wav": "../audio/v1.wav", "video_path": "../frames/", "labels": "/m/a,/m/b"},
        {"video_id": "v2", "wav": "/abs/v2.flac", "video_path": "/abs/frames", "labels": "/m/c"},
        {"video_id": "v1", "wav": "../audio/v1b.wav", "video_path": "../frames/", "labels": "/m/a"},
    ]}))
    data = read_original_manifest(str(path))
    assert list(data) == ["v1", "v2", "v1#2"]
    assert data["v1"]["wav"] == str(tmp_path / "audio" / "v1.wav")
    assert data["v1"]["video_path"] == str(tmp_path / "frames")
    assert data["v1"]["labels"] == ["/m/a", "/m/b"]
    assert data["v2"]["wav"] == "/abs/v2.flac"
    assert data["v1#2"]["video_id"] == "v1"


def test_speechbrain_json_and_csv(tmp_path):
    sb = tmp_path / "sb.json"
    sb.write_text(json.dumps({
        "x1": {"video": "vids/x1.mp4", "labels": ["/m/a"]},
        "x2": {"wav": "$root/x2.wav", "video": "vids/x2.mp4", "labels": "/m/a;/m/b"},
    }))
    data = read_manifest(str(sb), replacements={"root": "/data"})
    assert data["x1"]["video"] == str(tmp_path / "vids" / "x1.mp4")
    assert data["x1"]["video_id"] == "x1" and data["x1"]["wav"] is None
    assert data["x2"]["wav"] == "/data/x2.wav" and data["x2"]["labels"] == ["/m/a", "/m/b"]

    csv_path = tmp_path / "sb.csv"
    csv_path.write_text('ID,wav,video_path,labels\ny1,a/y1.wav,frames,"/m/a,/m/b"\ny2,a/y2.wav,frames,\n')
    data = read_manifest(str(csv_path))
    assert data["y1"]["wav"] == str(tmp_path / "a" / "y1.wav")
    assert data["y1"]["labels"] == ["/m/a", "/m/b"] and data["y2"]["labels"] == []

    bad = tmp_path / "bad.csv"
    bad.write_text("wav\nx.wav\n")
    with pytest.raises(ValueError, match="needs an 'ID' column"):
        read_manifest(str(bad))


def test_write_roundtrip_is_relative(tmp_path):
    data = {"a": {"video_id": "a", "wav": str(tmp_path / "w" / "a.wav"), "video": None,
                  "video_path": str(tmp_path / "f"), "labels": ["/m/x", "/m/y"]}}
    for fmt in ("original", "speechbrain"):
        out = tmp_path / f"{fmt}.json"
        write_manifest(data, str(out), fmt=fmt)
        text = out.read_text()
        assert str(tmp_path) not in text  # portable: relative paths
        back = read_manifest(str(out))
        assert back["a"]["wav"] == data["a"]["wav"] and back["a"]["labels"] == ["/m/x", "/m/y"]


def test_split_labels():
    assert split_labels(" /m/a , /m/b;/m/c ") == ["/m/a", "/m/b", "/m/c"]
    assert split_labels(None) == [] and split_labels(["x", ""]) == ["x"]
