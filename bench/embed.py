"""``vecface bench embed``: embedding throughput (images/s) by batch size.

Measures, on the same in-memory JPEG photos:

* CLIP ViT-B/32 (``clip-ViT-B-32``) through vecface's CLIPEmbedder: with the real weights when they
  are in the Hugging Face cache (or ``--model DIR``), otherwise with random weights of exactly the
  same architecture built locally, labelled so (speed does not depend on the weight values).
* the dlib face pipeline (HOG detection, 5-point alignment, ResNet descriptor), ``face-dlib``.

Each is run one image at a time in a plain loop (decode, embed, next), then batched with decoding
in a thread pool alongside inference, for batch sizes 1, 8, 16, 32, 64; then through ingest's pool
of worker processes (``--worker-counts 1,2``: read, hash, decode, detect and embed in N processes,
CLIP chunks of ``--clip-chunk`` images embedded as one batch), against one worker process. Every image counts decode,
EXIF/RGB conversion, resizing and inference; nothing is read from disk (the files are in memory),
so the figures are the embedder's, not the disk's.

Use from the bench CLI with ``register_embed(bench_app)``, or call :func:`run_embed_bench`.
"""

from __future__ import annotations

import io
import json
import platform
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import typer

DEFAULT_BATCHES = (1, 8, 16, 32, 64)


@dataclass
class EmbedBenchRow:
    pipeline: str  # "clip" or "face-dlib"
    model: str  # what ran, e.g. "clip-ViT-B-32 (real weights)"
    mode: str  # "loop" (one image at a time) or "batched"
    batch_size: int
    images: int
    seconds: float  # best of the repeats
    images_per_s: float  # images / seconds (best of the repeats)
    speedup: float | None = None  # against the loop (or, mode "workers", one worker) of the same pipeline
    median_images_per_s: float | None = None
    workers: int | None = None  # mode "workers": ingest worker processes


def bench_images(n: int, size: int = 512, faces: bool = False) -> list[bytes]:
    """``n`` JPEG files in memory: skimage's photos (or, with ``faces``, the astronaut portrait)
    at ``size`` px on the long side, each slightly different so no cache can help."""
    from PIL import Image, ImageEnhance

    try:
        from skimage import data
    except ImportError as e:
        from vecface.errors import MissingDependency

        raise MissingDependency("scikit-image", purpose="the embedding benchmark's test photos") from e

    names = ["astronaut"] if faces else ["astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry"]
    bases = []
    for name in names:
        try:
            img = Image.fromarray(getattr(data, name)()).convert("RGB")
        except Exception:  # a data file missing from this skimage install
            continue
        img.thumbnail((size, size))
        bases.append(img)
    out = []
    for i in range(n):
        img = bases[i % len(bases)]
        if i >= len(bases):
            img = ImageEnhance.Brightness(img).enhance(0.85 + 0.3 * ((i * 37) % 100) / 100)
            if i % 2:
                img = img.transpose(Image.FLIP_LEFT_RIGHT)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def _time(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """(best, median) wall time of ``repeat`` runs: on a shared machine the best run is the one
    least disturbed by other work (as timeit reports the minimum)."""
    import statistics

    runs = []
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return min(runs), statistics.median(runs)


def _measure(pipeline: str, model: str, images: list[bytes], batches: Sequence[int], *,
             prepare: Callable[[Any], Any], infer: Callable[[list[Any]], Any], workers: int,
             progress: Callable[[str], None], repeat: int = 1) -> list[EmbedBenchRow]:
    from vecface.embedders import pipelined

    n = len(images)
    infer([prepare(x) for x in images[:2]])  # warm up (first call allocates, loads kernels)
    rows: list[EmbedBenchRow] = []

    def loop() -> None:
        for x in images:
            infer([prepare(x)])

    progress(f"{pipeline}: one image at a time")
    secs, med = _time(loop, repeat)
    base = n / secs
    rows.append(EmbedBenchRow(pipeline, model, "loop", 1, n, secs, base, 1.0, n / med))
    for b in batches:
        progress(f"{pipeline}: batch {b}")

        def batched() -> None:
            for batch in pipelined(images, prepare, b, workers):
                infer(batch)

        secs, med = _time(batched, repeat)
        rows.append(EmbedBenchRow(pipeline, model, "batched", b, n, secs, n / secs, (n / secs) / base, n / med))
    return rows


def _measure_workers(pipeline: str, model: str, embedder: Any, images: list[bytes], counts: Sequence[int],
                     chunk: int, progress: Callable[[str], None], repeat: int = 1) -> list[EmbedBenchRow]:
    """Images/s of ingest's worker pool (read, hash, decode, detect/embed; nothing stored) with
    ``counts`` worker processes, on the images written to a temporary folder (read from the page
    cache). Each pool is started and warmed up (models loaded) before it is timed."""
    from vecface.ingest_workers import FilePool, Task

    rows: list[EmbedBenchRow] = []
    base = None
    with tempfile.TemporaryDirectory(prefix="vecface-bench-workers-") as tmp:
        tasks = []
        for i, data in enumerate(images):
            path = Path(tmp) / f"{i:05d}.jpg"
            path.write_bytes(data)
            tasks.append(Task(str(path), str(path)))
        for n in counts:
            progress(f"{pipeline}: {n} worker process(es)")
            with FilePool(embedder, n, chunk=chunk) as pool:
                warm = list(pool.results(tasks[:max(2, 2 * n * chunk)]))  # every worker loads its models
                if any(r.skip for r in warm):
                    raise RuntimeError(f"the benchmark images failed in a worker: {warm[0].skip}")
                secs, med = _time(lambda: list(pool.results(tasks)), repeat)
            ips = len(tasks) / secs
            base = base or ips
            rows.append(EmbedBenchRow(pipeline, model, "workers", chunk, len(tasks), secs, ips, ips / base,
                                      len(tasks) / med, workers=n))
    return rows


def run_embed_bench(n_images: int = 64, batch_sizes: Sequence[int] = DEFAULT_BATCHES, *,
                    model: str = "clip-ViT-B-32", device: str | None = None, workers: int = 2,
                    clip: bool = True, dlib: bool = True, image_size: int = 512, repeat: int = 3,
                    torch_threads: int | None = None, worker_counts: Sequence[int] = (1, 2),
                    clip_chunk: int = 32, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the embedding throughput benchmark; returns {"rows": [...], "environment": {...}}.

    ``worker_counts``: also measure ingest's worker pool with that many processes (empty: skip);
    CLIP workers embed chunks of ``clip_chunk`` images as one batch each."""
    import os

    progress = progress or (lambda msg: None)
    rows: list[EmbedBenchRow] = []
    env: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine(),
                           "images": n_images, "image_size": image_size, "workers": workers,
                           "batch_sizes": list(batch_sizes), "repeat": repeat, "cpu_count": os.cpu_count(),
                           "worker_counts": list(worker_counts)}
    if hasattr(os, "getloadavg"):
        env["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    if clip:
        import torch

        if torch_threads:
            torch.set_num_threads(torch_threads)
        from vecface.embedders import CLIPEmbedder

        from .random_clip import build_random_clip
        from vecface.errors import ModelUnavailable

        env.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
        tmp = None
        try:
            try:
                emb = CLIPEmbedder(model, device=device)
                label = f"{model} (real weights)"
            except ModelUnavailable:
                if model != "clip-ViT-B-32":
                    raise
                progress("clip-ViT-B-32 weights not here: building the same architecture with random weights")
                tmp = tempfile.TemporaryDirectory(prefix="vecface-vitb32-")
                path = build_random_clip(Path(tmp.name) / "clip-ViT-B-32-random", "ViT-B-32")
                emb = CLIPEmbedder(str(path), device=device)
                label = "ViT-B/32 architecture, random weights (real weights not present)"
            env["clip_device"] = emb.device
            if emb.device.startswith("cuda"):
                env["clip_device_name"] = torch.cuda.get_device_name(torch.device(emb.device))
            env["clip_dim"] = emb.dim
            rows += _measure("clip", label, bench_images(n_images, image_size), batch_sizes,
                             prepare=emb.prepare, infer=emb.embed_prepared, workers=workers, progress=progress,
                             repeat=repeat)
            if worker_counts:
                rows += _measure_workers("clip", label, emb, bench_images(n_images, image_size), worker_counts,
                                         clip_chunk, progress, repeat)
        finally:
            if tmp is not None:
                from vecface.embedders import clear_model_cache

                clear_model_cache()
                tmp.cleanup()
    if dlib:
        import dlib as _dlib

        from vecface.embedders import make_embedder

        env["dlib"] = _dlib.__version__
        emb = make_embedder("face-dlib", device=device)
        env["dlib_device"] = emb.device
        label = "dlib HOG (upsample 1) + 5-point + ResNet-128"
        rows += _measure("face-dlib", label, bench_images(n_images, image_size, faces=True), batch_sizes,
                         prepare=emb.prepare, infer=emb.extract, workers=workers, progress=progress,
                         repeat=repeat)
        if worker_counts:
            rows += _measure_workers("face-dlib", label, emb, bench_images(n_images, image_size, faces=True),
                                     worker_counts, 1, progress, repeat)
    if hasattr(os, "getloadavg"):
        env["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return {"rows": [asdict(r) for r in rows], "environment": env}


def results_table(result: dict[str, Any]):
    from rich.table import Table

    env = result["environment"]
    models = dict.fromkeys((r["pipeline"], r["model"]) for r in result["rows"])
    t = Table(title=f"embedding throughput: {env['images']} JPEG photos of {env['image_size']} px, "
                    f"{env.get('clip_device', 'cpu')}, torch threads {env.get('torch_threads', '-')}, "
                    f"{env['workers']} decode threads, best of {env['repeat']}, {env.get('cpu_count', '?')} cores, "
                    f"load average {_load(env)}", title_justify="left",
              caption="; ".join(f"{p}: {m}" for p, m in models) + "; vs: against the loop, or (mode workers) "
                      "against 1 worker process", caption_justify="left")
    for col in ("pipeline", "mode", "batch", "workers", "seconds", "images/s", "median images/s", "vs"):
        t.add_column(col, justify="left" if col in ("pipeline", "mode") else "right")
    for r in result["rows"]:
        t.add_row(r["pipeline"], r["mode"], str(r["batch_size"]), str(r.get("workers") or "-"), f"{r['seconds']:.2f}",
                  f"{r['images_per_s']:.1f}", f"{r['median_images_per_s']:.1f}", f"{r['speedup']:.2f}x")
    return t


def _load(env: dict[str, Any]) -> str:
    """The 1-minute load average at the start and the end of the run (how busy the machine was)."""
    start, end = env.get("load_average_at_start"), env.get("load_average_at_end")
    return f"{start[0]} -> {end[0]}" if start and end else "-"


def markdown_table(result: dict[str, Any]) -> str:
    lines = ["| pipeline | mode | batch | workers | images/s (best) | images/s (median) | vs loop / 1 worker |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['pipeline']} | {r['mode']} | {r['batch_size']} | {r.get('workers') or '-'} | "
                     f"{r['images_per_s']:.1f} | {r['median_images_per_s']:.1f} | {r['speedup']:.2f}x |")
    return "\n".join(lines)


def embed_cmd(
    images: int = typer.Option(64, "--images", min=1, help="images per measurement"),
    batch_sizes: str = typer.Option(",".join(map(str, DEFAULT_BATCHES)), "--batch-sizes", help="comma-separated"),
    model: str = typer.Option("clip-ViT-B-32", "--model", help="CLIP model name or directory"),
    device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda or auto (default: cuda if present)"),
    workers: int = typer.Option(2, "--workers", min=1, help="decode threads"),
    image_size: int = typer.Option(512, "--image-size", min=32, help="long side of the test photos"),
    repeat: int = typer.Option(3, "--repeat", min=1, help="runs per measurement; the best is reported"),
    torch_threads: Optional[int] = typer.Option(None, "--torch-threads", min=1, help="torch intra-op threads "
                                                "(default: torch's, one per core)"),
    skip_clip: bool = typer.Option(False, "--no-clip", help="skip CLIP"),
    skip_dlib: bool = typer.Option(False, "--no-dlib", help="skip the dlib face pipeline"),
    worker_counts: str = typer.Option("1,2", "--worker-counts", help="ingest worker process counts to measure, "
                                      "comma-separated ('' to skip)"),
    clip_chunk: int = typer.Option(32, "--clip-chunk", min=1, help="images a CLIP worker embeds as one batch"),
    out: Optional[Path] = typer.Option(None, "--out", help="also write the results as JSON here"),
) -> None:
    """Embedding throughput (images/s): batch sizes 1-64 against a one-image loop, and ingest's worker
    processes (1, 2, ...): CLIP ViT-B/32 and dlib faces."""
    from rich.console import Console

    console = Console()
    sizes = _int_list(batch_sizes, "--batch-sizes")
    if not sizes:
        raise typer.BadParameter("--batch-sizes takes positive integers such as 1,8,16")
    result = run_embed_bench(images, sizes, model=model, device=device, workers=workers, clip=not skip_clip,
                             dlib=not skip_dlib, image_size=image_size, repeat=repeat,
                             torch_threads=torch_threads, worker_counts=_int_list(worker_counts, "--worker-counts"),
                             clip_chunk=clip_chunk,
                             progress=lambda msg: console.print(f"[dim]{msg}[/]"))
    console.print(results_table(result))
    if out:
        out.write_text(json.dumps({**result, "markdown": markdown_table(result)}, indent=2))
        console.print(f"results: {out}")


def _int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise typer.BadParameter(f"{flag} takes comma-separated integers such as 1,2") from None
    if any(v < 1 for v in values):
        raise typer.BadParameter(f"{flag} takes positive integers")
    return values


def register_embed(bench_app: typer.Typer) -> None:
    """Add ``embed`` to the ``vecface bench`` sub-app."""
    bench_app.command("embed")(embed_cmd)
