"""Vectors and metadata as callers may give them: extreme magnitudes and the wrong shapes of
metadata, through each real backend."""

from __future__ import annotations

import numpy as np
import pytest

from vecface.errors import InvalidArgument
from vecface.types import Metric, as_matrix, clean_metadata


@pytest.mark.parametrize("value", [1e38, -3e38, 1e-40])
def test_extreme_magnitudes_keep_their_direction(value):
    vec = np.full(8, value, dtype=np.float32)
    vec[0] = -vec[0]
    out = as_matrix(vec, 8, Metric.COSINE)[0]
    expected = np.sign(vec) / np.sqrt(8)
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_huge_vector_stored_as_unit_vector(store_factory):
    store = store_factory(dim=8)
    store.upsert_arrays(["huge", "small"], np.array([[1e38] * 8, [1.0] + [0.0] * 7], dtype=np.float32))
    (rec,) = store.get(["huge"])
    np.testing.assert_allclose(rec.vector, np.full(8, 1 / np.sqrt(8)), atol=1e-6)
    assert store.search(np.ones(8), 1)[0].id == "huge"
    with pytest.raises(InvalidArgument, match="all zeros"):
        store.upsert_arrays(["zero"], np.zeros((1, 8), dtype=np.float32))


@pytest.mark.parametrize("meta", [[("path", "/a.jpg")], ["path"], "path=/a.jpg", 3, {1: "x"},
                                  {"bbox": ["a", "b", "c", "d"]}])
def test_metadata_of_the_wrong_shape_is_a_vecface_error(meta):
    with pytest.raises(InvalidArgument, match="metadata"):
        clean_metadata(meta)


def test_metadata_list_through_the_store(store_factory):
    store = store_factory(dim=8)
    with pytest.raises(InvalidArgument, match="metadata must be a mapping"):
        store.upsert_arrays(["a"], np.ones((1, 8), dtype=np.float32), [[("path", "/a.jpg")]])
    assert store.count() == 0
