"""The options that say where a command's store is (``--data-dir``, ``--dsn``, ``--read-dsn``,
``--url``, ``--replication``, ``--shards``, ``--consistency``, ``--faiss-path``), declared once in
``vecface/cli/common.py`` and given to every command that opens a store."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import vecface
from vecface.cli import app

skimage_data = pytest.importorskip("skimage.data")


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("command", [["search", "--text", "x"], ["ingest", "."], ["people", "list"], ["check", "c"],
                                     ["collections"], ["drop", "c", "--yes"], ["serve"]])
@pytest.mark.parametrize("flag", [["--replication", "2"], ["--shards", "2"], ["--consistency", "all"],
                                  ["--read-dsn", "postgresql://replica/db"], ["--dsn", "postgresql://x/db"],
                                  ["--url", "http://127.0.0.1:9"]])
def test_a_flag_for_another_backend_is_a_usage_error(command, flag, tmp_path):
    res = run(*command, "--backend", "faiss", "--data-dir", tmp_path, *flag)
    assert res.exit_code == 2, res.output
    assert flag[0] in res.output and "not apply to the faiss backend" in res.output
    assert not (tmp_path / "faiss").exists()  # refused before anything was opened


def test_weaviate_replication_shards_and_consistency_from_the_cli(weaviate_options, tiny_clip, tmp_path):
    name = f"cliopts_{np.random.default_rng().integers(1 << 30)}"
    where = ["--backend", "weaviate", "--data-dir", weaviate_options.get("data_dir", tmp_path)]
    flags = [*where, "--collection", name]
    root = tmp_path / "pics"
    root.mkdir()
    for n in ("astronaut", "coffee"):
        Image.fromarray(getattr(skimage_data, n)()).save(root / f"{n}.png")
    res = run("ingest", root, *flags, "--embedder", "clip", "--model", tiny_clip, "--no-progress",
              "--shards", "2", "--replication", "1", "--consistency", "all")
    assert res.exit_code == 0, res.output
    try:
        with vecface.open_store("weaviate", name, create=False, **weaviate_options) as store:
            cfg = store._coll().config.get()
            assert cfg.sharding_config.desired_count == 2 and cfg.replication_config.factor == 1
            assert store.count() == 2
        res = run("search", root / "coffee.png", *flags, "-k", "1", "--consistency", "all", "--json")
        assert res.exit_code == 0, res.output
        assert json.loads(res.output)["hits"][0]["path"].endswith("coffee.png")
        res = run("search", root / "coffee.png", *flags, "--consistency", "most")
        assert res.exit_code == 1 and "consistency must be one of" in res.output
    finally:
        res = run("drop", name, *where, "--yes")
        assert res.exit_code == 0, res.output


def test_people_options_before_a_subcommand_are_refused_not_ignored(tmp_path):
    """``vecface people -c family list`` would list the default collection: it is a usage error."""
    res = run("people", "-c", "family", "list", "--data-dir", tmp_path)
    assert res.exit_code == 2 and "--collection go(es) after the subcommand" in res.output
    res = run("people", "list", "-c", "family", "--data-dir", tmp_path)  # the right place: reaches the store
    assert res.exit_code == 1 and "no collection 'family'" in res.output
