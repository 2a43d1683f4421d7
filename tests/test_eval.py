"""vecface eval: retrieval and grouping metrics per embedder on labelled folders built from
scikit-image's and matplotlib's portraits (and their transformed copies)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vecface.errors import InvalidArgument
from vecface.evaluate import (evaluate, grouping_quality, labelled_images, pair_distances, retrieval_metrics,
                              suggest_threshold)

from .people_photos import build

pytest.importorskip("dlib")


def test_retrieval_metrics_by_hand():
    labels = np.array(["a", "a", "b", "b", "c"])
    # rows: the other records of each query, nearest first
    order = np.array([[1, 2, 3, 4],   # a: right first   -> rank1 1, AP 1
                      [2, 0, 3, 4],   # a: right second  -> rank1 0, AP 1/2
                      [0, 1, 4, 3],   # b: right last    -> rank1 0, AP 1/4
                      [2, 0, 1, 4],   # b: right first   -> rank1 1, AP 1
                      [0, 1, 2, 3]])  # c: alone, not counted
    rank1, p2, m_ap, counted = retrieval_metrics(order, labels, 2)
    assert counted == 4
    assert rank1 == pytest.approx(0.5)
    assert p2 == pytest.approx((1 / 2 + 1 / 2 + 0 + 1 / 2) / 4)
    assert m_ap == pytest.approx((1 + 0.5 + 0.25 + 1) / 4)


def test_threshold_and_grouping_quality():
    same = np.array([0.01, 0.02, 0.05])
    different = np.array([0.04, 0.1, 0.2, 0.3])
    t = suggest_threshold(same, different)
    assert 0.02 < t < 0.04 or 0.05 < t < 0.1  # both cuts decide 6 of 7 pairs right
    assert suggest_threshold(np.array([0.01]), np.array([0.5])) == pytest.approx(0.255)
    q = grouping_quality(np.array([0, 0, 1, 1, 1]), np.array(["a", "a", "a", "b", "b"]))
    # pairs put together: (0,1) right, (2,3) wrong, (2,4) wrong, (3,4) right; same-label pairs: 3 + 1 = 4
    assert q == {"precision": 0.5, "recall": 0.5, "people_found": 2, "people_labelled": 2}
    x = np.eye(3, dtype=np.float32)
    s, d = pair_distances(x, np.array(["a", "a", "b"]))
    assert s.tolist() == [1.0] and d.tolist() == [1.0, 1.0]


def test_labelled_folder_layout(tmp_path):
    build(tmp_path / "flat", per_person=2, people=["eileen", "grace"], group_photo=False, labelled=False)
    with pytest.raises(InvalidArgument, match="person_name"):
        labelled_images(tmp_path / "flat")
    with pytest.raises(InvalidArgument):
        labelled_images(tmp_path / "missing")
    build(tmp_path / "tree", per_person=2, people=["eileen", "grace"], group_photo=False)
    (tmp_path / "tree" / "loose.jpg").write_bytes((tmp_path / "tree" / "eileen" / "eileen_0.jpg").read_bytes())
    found = labelled_images(tmp_path / "tree")
    assert sorted(set(found.values())) == ["eileen", "grace"] and len(found) == 4  # the loose photo has no label


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    root = tmp_path_factory.mktemp("labelled")
    build(root, per_person=4, people=["eileen", "grace", "alex", "blake"], group_photo=False)
    return root


def test_eval_face_dlib_and_tiny_clip(labelled, tiny_clip, tmp_path):
    out = tmp_path / "out"
    report = evaluate(labelled, ["face-dlib", "clip", "face-clip"], model=tiny_clip, device="cpu", out_dir=out,
                      workers=0)
    by = {r["embedder"]: r for r in report["results"]}
    dlib = by["face-dlib"]
    assert dlib["error"] is None and dlib["records"] == 16 and dlib["people_labelled"] == 4
    assert dlib["rank1"] == 1.0 and dlib["mean_average_precision"] == 1.0 and dlib["precision_at_k"] == 0.6  # 3 others of 5
    assert dlib["false_match_rate"] == 0.0 and dlib["same_person_recall"] == 1.0
    grouped = dlib["grouping"]["default"]
    assert (grouped["precision"], grouped["recall"], grouped["people_found"]) == (1.0, 1.0, 4)
    assert sum(dlib["histogram"]["same"]) == 4 * 6 and sum(dlib["histogram"]["different"]) == 16 * 15 // 2 - 24
    for kind in ("clip", "face-clip"):  # random weights: numbers, not quality
        r = by[kind]
        assert r["error"] is None and r["records"] == 16
        assert 0 <= r["rank1"] <= 1 and 0 <= r["mean_average_precision"] <= 1 and r["suggested_threshold"] > 0
    saved = json.loads((out / "eval.json").read_text())
    assert [r["embedder"] for r in saved["results"]] == ["face-dlib", "clip", "face-clip"]
    assert (out / "eval.png").stat().st_size > 10_000


def test_eval_reports_an_embedder_that_cannot_run(labelled, tmp_path):
    report = evaluate(labelled, ["clip"], model=str(tmp_path / "no-such-model"), workers=0)
    (r,) = report["results"]
    assert r["error"] and r["rank1"] is None
    with pytest.raises(InvalidArgument, match="unknown embedder"):
        evaluate(labelled, ["face-magic"])


def test_eval_command(labelled, tmp_path):
    from typer.testing import CliRunner

    from vecface.cli import app

    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["eval", str(labelled), "-e", "face-dlib", "--out", str(out), "--workers", "0"])
    assert res.exit_code == 0, res.output
    assert "face-dlib" in res.output and "4 of 4" in res.output
    assert json.loads((out / "eval.json").read_text())["results"][0]["rank1"] == 1.0
    res = CliRunner().invoke(app, ["eval", str(tmp_path / "nothing-here")])
    assert res.exit_code != 0
