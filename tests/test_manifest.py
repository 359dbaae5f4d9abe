"""Manifests and dataset adapters, on the real annotation files in ../shared and on small files
written in the official formats of the datasets that are not available here."""
import csv
from pathlib import Path

import pytest

from seds.data.manifest import (ADAPTERS, MANIFEST_COLUMNS, Manifest, ManifestError, ManifestRow,
                                load_manifest, read_table, register_adapter, split_from_filename,
                                write_manifest)


def read_csv(path, delimiter=","):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter=delimiter))


# --- real files ----------------------------------------------------------------------------------

def test_how2sign_realigned(shared_data):
    path = shared_data / "annotations" / "how2sign_realigned_val.csv"
    raw = read_csv(path)
    m = load_manifest(path, dataset="how2sign", root="/data/h2s/clips")
    assert len(m) == len(raw) > 1700
    assert m.splits() == {"val": len(raw)}                   # split from the file name
    for r, src in zip(m, raw):
        assert r.id == src["SENTENCE_NAME"]
        assert r.video == f"/data/h2s/clips/{src['SENTENCE_NAME']}.mp4"
        assert r.text == src["SENTENCE"].strip()
        assert r.signer == ""
        assert r.extra["video_id"] == src["VIDEO_ID"] and r.extra["start"] == src["START_REALIGNED"]
    # sentences with commas/quotes survive the CSV quoting
    assert any("," in r.text for r in m)
    # the same rows through the "adapter:path" shorthand, and split selection
    test_csv = shared_data / "annotations" / "how2sign_realigned_test.csv"
    test = load_manifest(f"how2sign:{test_csv}", split="test")
    assert len(test) == 2357 and {r.split for r in test} == {"test"}
    with pytest.raises(ManifestError, match="available splits: val"):
        load_manifest(path, dataset="how2sign", split="test")


def test_how2sign_tab_separated_is_the_same(shared_data, tmp_path):
    """The official How2Sign release is tab-separated; the copy here is comma-separated."""
    src = shared_data / "annotations" / "how2sign_realigned_val.csv"
    raw = read_csv(src)[:50]
    tsv = tmp_path / "how2sign_realigned_val.csv"
    with open(tsv, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(raw[0]), delimiter="\t")
        w.writeheader()
        w.writerows(raw)
    a = load_manifest(tsv, dataset="how2sign", root="/v")
    b = load_manifest(src, dataset="how2sign", root="/v").head(50)
    assert [r.as_dict() for r in a] == [r.as_dict() for r in b]


def test_phoenix2014t(shared_data):
    path = shared_data / "annotations" / "phoenix2014t.csv"
    raw = read_csv(path)
    m = load_manifest(path, dataset="phoenix2014t", root="/data/PHOENIX-2014-T")
    assert m.splits() == {"train": 7096, "dev": 519, "test": 642}
    for r, src in zip(m, raw):
        assert r.id == src["name"] and r.text == src["text"] and r.extra["gloss"] == src["gloss"]
        assert r.video == f"/data/PHOENIX-2014-T/features/fullFrame-210x260px/{src['split']}/{src['name']}"
        assert r.extra["n_frames"] == src["n_frames"]
    dev = load_manifest(path, dataset="phoenix2014t", split="dev")
    assert len(dev) == 519
    # "val" is accepted for PHOENIX's "dev"
    assert load_manifest(path, dataset="phoenix2014t", split="val").ids() == dev.ids()


def test_how2sign_mini(shared_data):
    path = shared_data / "how2sign-mini" / "manifest.csv"
    raw = read_csv(path)
    m = load_manifest(path, dataset="how2sign_mini", check_files=True)   # all 217 clips exist
    assert len(m) == 217
    assert sum(not r.labeled for r in m) == 151
    labeled = {s: sum(r.labeled for r in m if r.split == s) for s in ("train", "val")}
    assert labeled == {"train": 42, "val": 24}
    for r, src in zip(m, raw):
        assert r.id == src["id"] and r.text == src["sentence"] and r.signer == src["video_id"]
        assert Path(r.video) == path.parent / src["file"]
        assert r.extra["n_frames"] == src["n_frames"]
    val = load_manifest(path, dataset="how2sign_mini", split="val")
    assert len(val) == 24 and all(r.labeled for r in val)
    assert len(m.labeled()) == 66


# --- formats of datasets not present here ------------------------------------------------------

def test_phoenix_official_corpus_file(tmp_path):
    p = tmp_path / "PHOENIX-2014-T.dev.corpus.csv"
    p.write_text("name|video|start|end|speaker|orth|translation\n"
                 "01April_2010_Thursday_heute-6697|01April_2010_Thursday_heute-6697/1/*.png|-1|-1|Signer04|"
                 "REGEN SCHNEE|regen und schnee\n"
                 "01April_2010_Thursday_heute-6698|x/1/*.png|-1|-1|Signer01|SONNE|sonne\n", encoding="utf-8")
    m = load_manifest(p, dataset="phoenix2014t", root="/P")
    assert [r.split for r in m] == ["dev", "dev"]
    r = m[0]
    assert (r.text, r.signer, r.extra["gloss"]) == ("regen und schnee", "Signer04", "REGEN SCHNEE")
    assert r.video == "/P/features/fullFrame-210x260px/dev/01April_2010_Thursday_heute-6697"
    assert r.extra["source_video"].endswith("/1/*.png")          # clashing column kept, renamed
    assert "speaker" not in r.extra


def write_csl(tmp_path, with_text=True):
    d = tmp_path / "sentence_label"
    d.mkdir()
    (d / "split_1.txt").write_text("name|split\nS000000_P0000_T00|train\nS000001_P0004_T00|dev\n"
                                   "S000002_P0008_T01|test\n", encoding="utf-8")
    if with_text:
        (d / "csl_daily_text.tsv").write_text("name\ttext\tgloss\nS000000_P0000_T00\t你好\t你 好\n"
                                              "S000001_P0004_T00\t谢谢你\t谢谢 你\n", encoding="utf-8")
    return d


def test_csl_daily(tmp_path):
    d = write_csl(tmp_path)
    m = load_manifest(d, dataset="csl_daily", root="/CSL")           # the folder, or the split file
    assert m.ids() == ["S000000_P0000_T00", "S000001_P0004_T00", "S000002_P0008_T01"]
    assert [r.split for r in m] == ["train", "dev", "test"]
    assert [r.signer for r in m] == ["P0000", "P0004", "P0008"]
    assert [r.text for r in m] == ["你好", "谢谢你", ""]                # no sentence: kept, unlabeled
    assert m[0].extra["gloss"] == "你 好"
    assert m[0].video == "/CSL/sentence/frames_512x512/S000000_P0000_T00"
    same = load_manifest(d / "split_1.txt", dataset="csl_daily", root="/CSL", split="dev")
    assert same.ids() == ["S000001_P0004_T00"]
    # an explicit text file (CSV this time) and a text-file signer column win
    t = tmp_path / "mine.csv"
    t.write_text("name,text,signer\nS000002_P0008_T01,再见,7\n", encoding="utf-8")
    m2 = load_manifest(d, dataset="csl_daily", text_file=str(t), split="test")
    assert (m2[0].text, m2[0].signer) == ("再见", "7")


def test_csl_daily_without_text_file_explains(tmp_path):
    d = write_csl(tmp_path, with_text=False)
    (d / "csl2020ct_v2.pkl").write_bytes(b"\x80\x04not a real pickle")
    with pytest.raises(ManifestError, match="text_file"):
        load_manifest(d, dataset="csl_daily")


def test_folder_adapter_with_custom_columns(tmp_path):
    (tmp_path / "vids").mkdir()
    for n in ("a", "b"):
        (tmp_path / "vids" / f"{n}.mp4").write_bytes(b"x")
    ann = tmp_path / "labels.tsv"
    ann.write_text("clip\tpath\tsentence\tpart\twho\textra_col\n"
                   "a\tvids/a.mp4\thello there\ttrain\ts1\tfoo\n"
                   "b\tvids/b.mp4\tbye\ttest\ts2\tbar\n", encoding="utf-8")
    m = load_manifest(ann, dataset="folder", id_col="clip", file_col="path", text_col="sentence",
                      split_col="part", signer_col="who", check_files=True)
    assert [r.as_dict() for r in m] == [
        {"id": "a", "video": str(tmp_path / "vids/a.mp4"), "text": "hello there", "split": "train",
         "signer": "s1", "path": "vids/a.mp4", "extra_col": "foo"},
        {"id": "b", "video": str(tmp_path / "vids/b.mp4"), "text": "bye", "split": "test",
         "signer": "s2", "path": "vids/b.mp4", "extra_col": "bar"}]
    with pytest.raises(FileNotFoundError, match="1 of 2 videos"):
        (tmp_path / "vids" / "b.mp4").unlink()
        load_manifest(ann, dataset="folder", id_col="clip", file_col="path", text_col="sentence",
                      split_col="part", check_files=True)


# --- manifest format, errors ----------------------------------------------------------------------

def test_write_and_read_back(tmp_path):
    rows = [ManifestRow("x/1", "/v/x 1.mp4", 'she said "hi, you"\nthen left', "train", "s1", {"gloss": "HI"}),
            ManifestRow("y", "/v/y.mp4", "", "val", "", {"n_frames": "12"})]
    p = write_manifest(rows, tmp_path / "out" / "m.csv")
    header = p.read_text(encoding="utf-8").splitlines()[0].split(",")
    assert header[:5] == list(MANIFEST_COLUMNS) and set(header[5:]) == {"gloss", "n_frames"}
    back = load_manifest(p)
    assert [r.as_dict() for r in back] == [{**r.as_dict(), **{k: "" for k in ("gloss", "n_frames")
                                                                if k not in r.extra}} for r in rows]
    assert not back[1].labeled and back[0].labeled
    assert back.get("y").extra["n_frames"] == "12"
    # relative video paths in a manifest are relative to its folder (or to root)
    rel = tmp_path / "rel.csv"
    rel.write_text("id,video,text,split,signer\na,clips/a.mp4,t,train,\n", encoding="utf-8")
    assert load_manifest(rel)[0].video == str(tmp_path / "clips/a.mp4")
    assert load_manifest(rel, root="/elsewhere")[0].video == "/elsewhere/clips/a.mp4"


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such.csv"):
        load_manifest(tmp_path / "no_such.csv", dataset="how2sign")
    bad = tmp_path / "how2sign_realigned_val.csv"
    bad.write_text("VIDEO_ID,SENTENCE_NAME,START\nv,s,1\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"lacks the text column.*SENTENCE"):
        load_manifest(bad, dataset="how2sign")
    dup = tmp_path / "dup.csv"
    dup.write_text("id,video,text,split,signer\na,a.mp4,t,train,\na,b.mp4,u,train,\n", encoding="utf-8")
    with pytest.raises(ManifestError, match="duplicate id"):
        load_manifest(dup)
    empty_id = tmp_path / "eid.csv"
    empty_id.write_text("id,video,text,split,signer\n,a.mp4,t,train,\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"eid.csv:2: empty id"):
        load_manifest(empty_id)
    with pytest.raises(ManifestError, match="unknown dataset adapter 'nope'"):
        load_manifest(dup, dataset="nope")
    with pytest.raises(ManifestError, match="unexpected keyword"):
        load_manifest(dup, dataset="how2sign_mini", colour="red")
    tmpl = tmp_path / "t.csv"
    tmpl.write_text("id,file,text,split\na,a.mp4,t,train\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"template.*\['nofield'\]"):
        load_manifest(tmpl, dataset="folder", video_template="{nofield}.mp4")
    ragged = tmp_path / "r.csv"
    ragged.write_text("id,video,text,split,signer\na,a.mp4,t,train,,extra\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"r.csv:2: more fields"):
        load_manifest(ragged)
    hollow = tmp_path / "h.csv"
    hollow.write_text("", encoding="utf-8")
    with pytest.raises(ManifestError, match="empty"):
        load_manifest(hollow)
    only_header = tmp_path / "oh.csv"
    only_header.write_text("id,video,text,split,signer\n", encoding="utf-8")
    with pytest.raises(ManifestError, match="no rows"):
        load_manifest(only_header)


def test_split_from_filename_and_registry():
    assert split_from_filename("how2sign_realigned_train.csv") == "train"
    assert split_from_filename("PHOENIX-2014-T.train-complex-annotation.corpus.csv") == "train"
    assert split_from_filename("x/TEST.tsv") == "test"
    assert split_from_filename("trainee.csv") is None
    assert {"how2sign", "phoenix2014t", "csl_daily", "how2sign_mini", "folder", "manifest"} <= set(ADAPTERS)
    with pytest.raises(ValueError, match="twice"):
        register_adapter("how2sign", "dup")(lambda a, split=None: [])


def test_read_table_sniffs_and_strips(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("\ufeffa | b\n 1 | two words \n", encoding="utf-8")
    cols, rows = read_table(p)
    assert cols == ["a", "b"] and rows == [{"a": "1", "b": "two words"}]
    m = Manifest([ManifestRow("a", "v")])
    with pytest.raises(ManifestError, match=r"split 'train'.*<empty> \(1\)"):
        m.select("train")
