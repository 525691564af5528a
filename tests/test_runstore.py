"""The stored run's paths file: read back by each row's own keys, whatever the row order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.errors import InputError
from pipeline.runstore import read_paths


def _write(path, ids, paths, cond, months, order):
    n, p, h = paths.shape
    i, k, m = np.meshgrid(np.arange(n), np.arange(p), np.arange(h), indexing="ij")
    i, k, m = i.ravel()[order], k.ravel()[order], m.ravel()[order]
    pq.write_table(
        pa.table(
            {
                "unique_id": pa.array([ids[j] for j in i]).dictionary_encode(),
                "path": pa.array(k.astype(np.int32)),
                "ds": pa.array(months.to_numpy(dtype="datetime64[ms]")[m]),
                "value": pa.array(paths.ravel()[order]),
                "conditioned": pa.array(cond.ravel()[order]),
            }
        ),
        path,
    )


def test_paths_come_back_in_place_from_shuffled_rows(tmp_path):
    rng = np.random.default_rng(0)
    ids = ["total", "inference", "inference/compute_gpu", "operations"]
    paths = rng.normal(size=(4, 7, 5))
    cond = rng.normal(size=(4, 7, 5))
    months = pd.date_range("2026-11-01", periods=5, freq="MS")
    _write(tmp_path / "p.parquet", ids, paths, cond, months, rng.permutation(4 * 7 * 5))
    # the run lists its series in its own order, not the file's
    ds, got, got_c = read_paths(tmp_path / "p.parquet", ids)
    np.testing.assert_array_equal(got, paths)
    np.testing.assert_array_equal(got_c, cond)
    assert list(ds) == list(months)


def test_a_paths_file_that_does_not_match_the_run_is_an_input_error(tmp_path):
    rng = np.random.default_rng(1)
    ids = ["total", "operations"]
    months = pd.date_range("2026-11-01", periods=3, freq="MS")
    paths = rng.normal(size=(2, 4, 3))
    _write(tmp_path / "p.parquet", ids, paths, paths, months, np.arange(23))  # a row lost
    with pytest.raises(InputError, match="one value per series, path and month"):
        read_paths(tmp_path / "p.parquet", ids)
    _write(tmp_path / "q.parquet", ids, paths, paths, months, np.arange(24))
    with pytest.raises(InputError, match="does not list"):
        read_paths(tmp_path / "q.parquet", ["total", "inference"])
