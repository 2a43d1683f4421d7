"""How well each embedder tells people apart, measured on a labelled folder (``vecface eval``).

The folder holds one sub-folder per person (``person_name/*.jpg``, the layout the Weaviate face
demo used). For each embedder the photos are ingested into a scratch FAISS collection (exact
search, a temporary directory, nothing of the user's data touched) and every record is used as a
query against all the others:

- **rank-1 identification accuracy**: the nearest other record has the query's label;
- **precision@k**: the share of the k nearest others with the query's label;
- **mAP**: mean average precision of the full ranking;
- **distances**: the cosine distances of every same-person and every different-person pair, their
  histogram, a **suggested threshold** (the distance that best separates them: most pairs decided
  right) and its **false-match rate** (different-person pairs within it) and same-person recall;
- **people grouping** (:func:`vecface.grouping.cluster`, what ``vecface people`` does), at the
  embedder's default threshold and at the suggested one: pairwise precision and recall against the
  labels, and the number of people found against the number labelled.

Face embedders make one record per face; a photo in which several faces are found is left out
(its folder names one person, not which face), and said so. Queries whose person has a single
record are not counted for rank-1, precision@k and mAP (nothing of theirs to find).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import InvalidArgument, VecfaceError

EMBEDDERS = ("face-dlib", "face-clip", "clip")


def labelled_images(root: str | os.PathLike[str]) -> dict[str, str]:
    """{absolute image path: label} for ``root/<label>/...`` (images further down count for their top folder)."""
    from .images import scan_images

    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise InvalidArgument(f"{root} is not a folder of person_name/ sub-folders")
    out = {}
    for path in scan_images(root):
        rel = path.relative_to(root)
        if len(rel.parts) >= 2:
            out[str(path)] = rel.parts[0]
    labels = set(out.values())
    if len(labels) < 2:
        raise InvalidArgument(f"{root} needs at least two person_name/ sub-folders with images; found {len(labels)}")
    return out


@dataclass
class EmbedderResult:
    embedder: str
    model: str | None = None  # the CLIP model (name or directory) of clip and face-clip
    records: int = 0
    people_labelled: int = 0
    left_out: list[str] = field(default_factory=list)  # photos with several faces, or none
    rank1: float | None = None
    precision_at_k: float | None = None
    k: int = 0
    mean_average_precision: float | None = None
    default_threshold: float | None = None
    suggested_threshold: float | None = None
    false_match_rate: float | None = None  # at the suggested threshold
    same_person_recall: float | None = None  # at the suggested threshold
    false_match_rate_default: float | None = None
    same_person_recall_default: float | None = None
    grouping: dict[str, Any] = field(default_factory=dict)  # "default" / "suggested" -> precision, recall, found
    histogram: dict[str, Any] = field(default_factory=dict)  # edges, same, different
    seconds: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return _rounded(vars(self))


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4) if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def retrieval_metrics(order: np.ndarray, labels: np.ndarray, k: int) -> tuple[float, float, float, int]:
    """rank-1 accuracy, precision@k, mAP from ``order`` (n, n-1): the other rows of each query by
    distance. Only queries with at least one other row of their label count; returns how many did."""
    same = labels[order] == labels[:, None]
    relevant = same.sum(axis=1)
    ok = relevant > 0
    if not ok.any():
        return float("nan"), float("nan"), float("nan"), 0
    same = same[ok]
    rank1 = float(same[:, 0].mean())
    p_at_k = float(same[:, :k].mean())
    hits = np.cumsum(same, axis=1)
    ranks = np.arange(1, same.shape[1] + 1)
    ap = (same * hits / ranks).sum(axis=1) / relevant[ok]
    return rank1, p_at_k, float(ap.mean()), int(ok.sum())


def pair_distances(x: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cosine distances of every same-label pair and every different-label pair (i < j)."""
    d = 1.0 - x @ x.T
    iu = np.triu_indices(len(x), 1)
    same = labels[iu[0]] == labels[iu[1]]
    return d[iu][same], d[iu][~same]


def suggest_threshold(same: np.ndarray, different: np.ndarray) -> float:
    """The distance that decides the most pairs right (same within, different beyond), each class
    weighted equally (there are far more different-person pairs); midway between neighbouring distances."""
    if not len(same) or not len(different):
        return float("nan")
    cuts = np.unique(np.concatenate([same, different]))
    mids = np.concatenate([(cuts[:-1] + cuts[1:]) / 2, [cuts[-1] + 1e-6]])
    tpr = np.searchsorted(np.sort(same), mids, side="right") / len(same)
    fpr = np.searchsorted(np.sort(different), mids, side="right") / len(different)
    return float(mids[int(np.argmax(tpr - fpr))])


def grouping_quality(groups: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Pairwise precision/recall of ``groups`` against ``labels``, and people found vs labelled."""
    iu = np.triu_indices(len(labels), 1)
    together = groups[iu[0]] == groups[iu[1]]
    same = labels[iu[0]] == labels[iu[1]]
    both = int((together & same).sum())
    return {"precision": both / int(together.sum()) if together.any() else 1.0,
            "recall": both / int(same.sum()) if same.any() else 1.0,
            "people_found": int(len(set(groups.tolist()))), "people_labelled": int(len(set(labels.tolist())))}


def _rates(same: np.ndarray, different: np.ndarray, t: float) -> tuple[float, float]:
    return (float((different <= t).mean()) if len(different) else float("nan"),
            float((same <= t).mean()) if len(same) else float("nan"))


def evaluate_embedder(kind: str, root: str | os.PathLike[str], images: dict[str, str], *, model: str | None = None, device: str | None = None,
                      k: int = 5, workdir: str | os.PathLike[str], workers: int | None = None) -> EmbedderResult:
    """Ingest ``root`` with one embedder into a scratch FAISS collection and measure it on ``images``
    ({path: label}, from :func:`labelled_images`)."""
    import time

    from .grouping import cluster, threshold_for
    from .people import load_faces
    from .embedders import DEFAULT_CLIP_MODEL, make_embedder
    from .ingest import ingest_folder
    from .manifest import Manifest
    from .registry import open_store

    t0 = time.perf_counter()
    result = EmbedderResult(kind, k=k)
    embedder = make_embedder(kind, model=model if kind != "face-dlib" else None, device=device)
    result.model = None if kind == "face-dlib" else (model or DEFAULT_CLIP_MODEL)
    work = Path(workdir) / kind
    work.mkdir(parents=True, exist_ok=True)
    with Manifest(work / "ingest.sqlite") as manifest, \
            open_store("faiss", "eval", embedder.dim, "cosine", path=str(work / "faiss")) as store:
        ingest_folder(store, root, embedder, manifest=manifest, progress=False, log_dir=work / "logs",
                      workers=workers, device=device)
        files = manifest.files(store.backend, store.name)
        result.left_out = sorted(p for p in images if p not in files or len(files[p].ids) != 1)
        ids = [files[p].ids[0] for p in sorted(images) if p not in result.left_out]
        faces = load_faces(store, ids)
        labels = np.asarray([images[m["path"]] for m in faces.metadata])
        result.records, result.people_labelled = len(faces), len(set(labels.tolist()))
        if len(faces) < 2:
            raise InvalidArgument(f"{kind}: fewer than two usable records; nothing to compare")
        kk = min(len(faces) - 1, 10_000)
        row = {i: n for n, i in enumerate(faces.ids)}
        hits = store.search_many(faces.vectors, min(kk + 1, 10_000))
    order = np.asarray([[row[h.id] for h in hs if h.id != faces.ids[q]][:kk] for q, hs in enumerate(hits)])
    result.k = min(k, kk)
    result.rank1, result.precision_at_k, result.mean_average_precision, _ = retrieval_metrics(order, labels, result.k)
    same, different = pair_distances(faces.vectors, labels)
    result.default_threshold = threshold_for(kind)
    result.suggested_threshold = suggest_threshold(same, different)
    result.false_match_rate, result.same_person_recall = _rates(same, different, result.suggested_threshold)
    result.false_match_rate_default, result.same_person_recall_default = _rates(same, different, result.default_threshold)
    for which, t in (("default", result.default_threshold), ("suggested", result.suggested_threshold)):
        if np.isfinite(t) and 0 < t < 2:
            result.grouping[which] = {"threshold": round(t, 4), **grouping_quality(cluster(faces.vectors, t), labels)}
    top = float(max(same.max(initial=0), different.max(initial=0), 1e-3))
    edges = np.linspace(0.0, top, 41)
    result.histogram = {"edges": edges.round(5).tolist(), "same": np.histogram(same, edges)[0].tolist(),
                        "different": np.histogram(different, edges)[0].tolist()}
    result.seconds = time.perf_counter() - t0
    return result


def evaluate(root: str | os.PathLike[str], embedders: Sequence[str] = EMBEDDERS, *, model: str | None = None,
             device: str | None = None, k: int = 5, out_dir: str | os.PathLike[str] | None = None,
             workers: int | None = None) -> dict[str, Any]:
    """Measure each embedder on the labelled folder ``root``; write ``eval.json`` and ``eval.png`` to
    ``out_dir`` (when given). An embedder that cannot run here (no CLIP weights) is reported with its error.
    ``workers``: ingest's worker processes (None: one per core; 0: in this process)."""
    for kind in embedders:
        if kind not in EMBEDDERS:
            raise InvalidArgument(f"unknown embedder {kind!r}; use {', '.join(EMBEDDERS)}")
    if k < 1:
        raise InvalidArgument("k must be >= 1")
    images = labelled_images(root)
    results = []
    with tempfile.TemporaryDirectory(prefix="vecface-eval-") as work:
        for kind in embedders:
            try:
                results.append(evaluate_embedder(kind, root, images, model=model, device=device, k=k, workdir=work,
                                                   workers=workers))
            except VecfaceError as e:
                results.append(EmbedderResult(kind, error=str(e)))
    report = {"folder": str(Path(root).expanduser().absolute()), "images": len(images),
              "people": len(set(images.values())), "model": model,
              "results": [r.to_dict() for r in results]}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
        report["plot"] = plot(results, out / "eval.png")
        report["json"] = str(out / "eval.json")
    return report


def plot(results: Sequence[EmbedderResult], path: str | os.PathLike[str]) -> str | None:
    """Same- vs different-person distance histograms, one panel per embedder, with both thresholds."""
    shown = [r for r in results if r.histogram]
    if not shown:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, len(shown), figsize=(5 * len(shown), 3.6), squeeze=False)
    for ax, r in zip(axes[0], shown):
        edges = np.asarray(r.histogram["edges"])
        width = edges[1] - edges[0]
        for key, colour in (("same", "tab:green"), ("different", "tab:red")):
            counts = np.asarray(r.histogram[key], dtype=float)
            share = counts / counts.sum() if counts.sum() else counts
            ax.bar(edges[:-1], share, width=width, align="edge", alpha=0.55, color=colour, label=f"{key} person")
        if r.suggested_threshold is not None and np.isfinite(r.suggested_threshold):
            ax.axvline(r.suggested_threshold, color="black", ls="--",
                       label=f"suggested {r.suggested_threshold:.3f} (FMR {r.false_match_rate:.3f})")
        if r.default_threshold is not None:
            ax.axvline(r.default_threshold, color="grey", ls=":", label=f"default {r.default_threshold:.3f}")
        ax.set_title(f"{r.embedder}" + (f" ({Path(r.model).name})" if r.model else "") + f": rank-1 {r.rank1:.2f}, mAP {r.mean_average_precision:.2f}", fontsize=10)
        ax.set_xlabel("cosine distance")
        ax.set_ylabel("share of pairs")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
