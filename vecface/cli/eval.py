"""``vecface eval FOLDER``: how well each embedder tells the people of a labelled folder apart
(:mod:`vecface.evaluate`); a table, ``eval.json`` and ``eval.png``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from .common import AsJson, Device, Model, handle_errors


@handle_errors
def eval_cmd(
    folder: Annotated[Path, typer.Argument(help="labelled photos: one sub-folder per person (person_name/*.jpg)")],
    embedder: Annotated[Optional[List[str]], typer.Option(
        "--embedder", "-e", help="face-dlib, face-clip or clip (repeat for several; default all three)")] = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="k of precision@k")] = 5,
    out: Annotated[Path, typer.Option("--out", "-o", help="folder for eval.json and eval.png")] = Path("vecface-eval"),
    workers: Annotated[Optional[int], typer.Option(
        "--workers", min=0, help="ingest worker processes (default one per core; 0: in this process)")] = None,
    model: Model = None,
    device: Device = None,
    as_json: AsJson = False,
) -> None:
    """Rank-1 accuracy, precision@k, mAP, same/different-person distances with a suggested
    threshold, and people-grouping quality, per embedder, on a labelled folder (scratch FAISS collections)."""
    from ..evaluate import EMBEDDERS, evaluate

    if not folder.is_dir():
        raise typer.BadParameter(f"{folder} is not a folder")
    report = evaluate(folder, embedder or EMBEDDERS, model=model, device=device, k=k, out_dir=out, workers=workers)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    print_report(report)


def _f(x, digits: int = 3) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def print_report(report: dict) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    out = Console()
    t = Table(title=escape(f"vecface eval {report['folder']}: {report['images']} photos of {report['people']} people"),
              title_justify="left")
    results = [r for r in report["results"] if not r.get("error")]
    t.add_column("")
    for r in results:
        t.add_column(r["embedder"], justify="right")

    def grouped(r, key):
        g = r["grouping"].get("default", {})
        return "" if not g else (f"{g['people_found']} of {g['people_labelled']}" if key == "found"
                                 else f"{_f(g['precision'], 2)} / {_f(g['recall'], 2)}")

    rows = [("records", lambda r: str(r["records"])),
            ("rank-1 accuracy", lambda r: _f(r["rank1"])),
            (f"precision@{report['results'][0].get('k') or ''}", lambda r: _f(r["precision_at_k"])),
            ("mean average precision", lambda r: _f(r["mean_average_precision"])),
            ("suggested threshold", lambda r: _f(r["suggested_threshold"], 4)),
            ("  false-match rate", lambda r: _f(r["false_match_rate"])),
            ("  same-person recall", lambda r: _f(r["same_person_recall"])),
            ("default threshold", lambda r: _f(r["default_threshold"], 4)),
            ("  false-match rate", lambda r: _f(r["false_match_rate_default"])),
            ("  same-person recall", lambda r: _f(r["same_person_recall_default"])),
            ("grouping precision / recall", lambda r: grouped(r, "pr")),
            ("people found", lambda r: grouped(r, "found"))]
    for label, cell in rows:
        t.add_row(label, *[cell(r) for r in results])
    out.print(t)
    for r in report["results"]:
        if r.get("model"):
            out.print(f"{r['embedder']}: model {escape(r['model'])}")
        if r.get("left_out"):
            out.print(f"{r['embedder']}: {len(r['left_out'])} photo(s) left out (no face, or several faces)")
        if r.get("error"):
            out.print(f"[red]{r['embedder']} not run:[/] {escape(r['error'])}")
    out.print("FMR: false-match rate (different-person pairs within the threshold); recall: same-person pairs "
              "within it; grouping at the default threshold (vecface people)")
    if report.get("plot"):
        out.print(f"plot: {report['plot']}  json: {report['json']}")
