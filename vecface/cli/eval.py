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
    model: Model = None,
    device: Device = None,
    as_json: AsJson = False,
) -> None:
    """Rank-1 accuracy, precision@k, mAP, same/different-person distances with a suggested
    threshold, and people-grouping quality, per embedder, on a labelled folder (scratch FAISS collections)."""
    from ..evaluate import EMBEDDERS, evaluate

    if not folder.is_dir():
        raise typer.BadParameter(f"{folder} is not a folder")
    report = evaluate(folder, embedder or EMBEDDERS, model=model, device=device, k=k, out_dir=out)
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
    for col in ("embedder", "records", "rank-1", "P@k", "mAP", "suggested threshold", "FMR", "recall",
                "default threshold", "FMR", "recall", "grouping P / R", "people found"):
        t.add_column(col, justify="left" if col == "embedder" else "right")
    for r in report["results"]:
        if r.get("error"):
            t.add_row(r["embedder"], *[""] * 11, escape(f"not run: {r['error'][:60]}..."))
            continue
        g = r["grouping"].get("default", {})
        t.add_row(r["embedder"], str(r["records"]), _f(r["rank1"]), f"{_f(r['precision_at_k'])} @{r['k']}",
                  _f(r["mean_average_precision"]), _f(r["suggested_threshold"], 4), _f(r["false_match_rate"]),
                  _f(r["same_person_recall"]), _f(r["default_threshold"], 4), _f(r["false_match_rate_default"]),
                  _f(r["same_person_recall_default"]),
                  f"{_f(g.get('precision'), 2)} / {_f(g.get('recall'), 2)}" if g else "",
                  f"{g.get('people_found')} of {g.get('people_labelled')}" if g else "")
    out.print(t)
    for r in report["results"]:
        if r.get("left_out"):
            out.print(f"{r['embedder']}: {len(r['left_out'])} photo(s) left out (no face, or several faces)")
        if r.get("error"):
            out.print(f"[red]{r['embedder']} not run:[/] {escape(r['error'])}")
    out.print("FMR: false-match rate (different-person pairs within the threshold); recall: same-person pairs "
              "within it; grouping at the default threshold (vecface people)")
    if report.get("plot"):
        out.print(f"plot: {report['plot']}  json: {report['json']}")
