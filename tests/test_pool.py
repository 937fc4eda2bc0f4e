"""Pool stores: round trips, streaming, validation messages, atomic writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ads.errors import DataError, StoreError
from ads.pool import open_pool, read_folder, write_pool


@settings(max_examples=25, deadline=None)
@given(
    x=arrays(np.float32, st.tuples(st.integers(1, 60), st.integers(1, 5)), elements=st.floats(-1e6, 1e6, width=32)),
    rows=st.integers(1, 17),
)
def test_features_round_trip_by_blocks(tmp_path_factory, x, rows):
    path = tmp_path_factory.mktemp("rt") / "s.zarr"
    write_pool(path, x)
    pool = open_pool(path)
    blocks = [b for _, b in pool.blocks(rows)]
    np.testing.assert_array_equal(np.concatenate(blocks), x)
    assert pool.kind == "features" and pool.n == x.shape[0]


def test_images_round_trip_with_labels_and_hidden(tmp_path, digits):
    images, _, y = digits
    path = write_pool(tmp_path / "i.zarr", images[:50], ids=[f"a{i}" for i in range(50)], y=y[:50],
                      hidden={"y": y[:50], "source": ["clean"] * 50})
    pool = open_pool(path)
    assert pool.kind == "images" and pool.item_shape == (8, 8, 1)
    np.testing.assert_array_equal(pool.read_x()[..., 0], images[:50])
    np.testing.assert_array_equal(pool.y(), y[:50])
    np.testing.assert_array_equal(pool.hidden("y"), y[:50])
    assert list(pool.hidden("source")) == ["clean"] * 50
    assert pool.ids()[3] == "a3"
    info = pool.describe()
    assert info["labeled"] == 50 and info["hidden"] == ["source", "y"]


def _corrupt(path: Path, array: str, mutate):
    import zarr

    g = zarr.open_group(str(path), mode="r+")
    mutate(g, array)


@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda g, a: g.attrs.pop("ads_schema"), r"is not an ads pool store: attribute 'ads_schema' is missing"),
        (lambda g, a: g.attrs.update({"kind": "video"}), r"has attribute kind='video'"),
        (lambda g, a: g.__delitem__("ids"), r"has no array 'ids'"),
        (lambda g, a: g.__delitem__("x"), r"has no array 'x'"),
    ],
)
def test_malformed_store_messages(tmp_path, mutate, match):
    path = write_pool(tmp_path / "s.zarr", np.ones((4, 3), np.float32), y=np.array([0, 1, 0, -1]))
    _corrupt(path, "x", mutate)
    with pytest.raises(StoreError, match=match):
        open_pool(path, role="pool")


def test_length_mismatch_duplicate_ids_nan_and_bad_labels(tmp_path):
    import zarr

    p = write_pool(tmp_path / "a.zarr", np.ones((4, 3), np.float32), y=np.array([0, 1, 0, -1]))
    g = zarr.open_group(str(p), mode="r+")
    g["y"][:] = np.array([0, 1, 7, -1])
    with pytest.raises(StoreError, match=r"pool '.*a.zarr' array 'y' has label 7 at row 2; expected -1 or 0..1"):
        open_pool(p, role="pool")
    del g["y"]
    g.create_array("y", shape=(3,), dtype="int64")
    with pytest.raises(StoreError, match=r"array 'y' has shape \(3,\); 'x' has 4 rows"):
        open_pool(p, role="pool")
    del g["y"]
    g["ids"][:] = np.array(["a", "b", "a", "c"])
    with pytest.raises(StoreError, match=r"duplicate ids, e.g. 'a'"):
        open_pool(p, role="pool")
    g["ids"][:] = np.array(["a", "b", "d", "c"])
    g["x"][2, 1] = np.nan
    with pytest.raises(StoreError, match=r"array 'x' has NaN or inf at row 2 \(id 'd'\)"):
        open_pool(p, role="pool")


@pytest.mark.parametrize("memory_rows", [1 << 22, 7], ids=["in-memory", "spilled-buckets"])
def test_duplicate_ids_found_in_memory_and_through_spilled_hash_buckets(tmp_path, monkeypatch, memory_rows):
    """Above HASH_MEMORY_ROWS the id hashes go to 256 bucket files; both paths must find
    the same duplicates (ids of different widths across chunks: NUL padding is not hashed),
    and distinct ids whose hashes collide (a deliberately weak hash) are not duplicates."""
    import ads.pool as pool_mod

    monkeypatch.setattr(pool_mod, "HASH_MEMORY_ROWS", memory_rows)
    n = 3000
    ids = np.array([f"id{i}" for i in range(n)])
    x = np.zeros((n, 2), np.float32)
    ok = write_pool(tmp_path / "ok.zarr", x, ids=ids, chunk_rows=256)
    assert open_pool(ok).n == n
    import zarr

    bad = write_pool(tmp_path / "dup.zarr", x, ids=ids, chunk_rows=256)
    zarr.open_group(str(bad), mode="r+")["ids"][2999] = "id17"  # another chunk, another width
    with pytest.raises(StoreError, match=r"duplicate ids, e.g. 'id17'"):
        open_pool(bad)
    real = pool_mod.id_hashes
    monkeypatch.setattr(pool_mod, "id_hashes", lambda a: real(a) % np.uint64(5) << np.uint64(58))
    assert open_pool(ok).n == n  # every hash collides, no id repeats
    with pytest.raises(StoreError, match=r"duplicate ids, e.g. 'id17'"):
        open_pool(bad)


def test_missing_and_not_a_group(tmp_path):
    with pytest.raises(StoreError, match=r"labeled store '.*nope.zarr' does not exist"):
        open_pool(tmp_path / "nope.zarr", role="labeled store")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(StoreError, match=r"is not a directory"):
        open_pool(tmp_path / "f.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match=r"not a zarr v3 group|not an ads pool store"):
        open_pool(tmp_path / "empty")


def test_write_rejects_bad_arrays_and_leaves_nothing(tmp_path):
    with pytest.raises(DataError, match=r"has NaN or inf at row 1"):
        write_pool(tmp_path / "n.zarr", np.array([[0.0], [np.nan]], np.float32))
    with pytest.raises(DataError, match=r"must be float of 2 dims \(features\) or uint8 of 3-4 dims"):
        write_pool(tmp_path / "n.zarr", np.ones((3, 4, 4), np.float32))
    with pytest.raises(DataError, match=r"'ids' are not unique"):
        write_pool(tmp_path / "n.zarr", np.ones((2, 2), np.float32), ids=["a", "a"])
    with pytest.raises(DataError, match=r"hidden array 'source' has shape"):
        write_pool(tmp_path / "n.zarr", np.ones((2, 2), np.float32), hidden={"source": ["a"]})
    assert list(tmp_path.iterdir()) == []  # no store and no temporary left behind


def test_overwrite_is_atomic(tmp_path):
    p = write_pool(tmp_path / "s.zarr", np.zeros((3, 2), np.float32))
    with pytest.raises(StoreError, match=r"already exists"):
        write_pool(p, np.ones((3, 2), np.float32))
    with pytest.raises(DataError):
        write_pool(p, np.full((3, 2), np.inf, np.float32), overwrite=True)
    np.testing.assert_array_equal(open_pool(p).read_x(), 0)  # old store intact
    write_pool(p, np.ones((5, 2), np.float32), overwrite=True)
    assert open_pool(p).n == 5
    assert sorted(q.name for q in tmp_path.iterdir()) == ["s.zarr"]


def test_read_folder_classes_and_flat(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (tmp_path / "lab" / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (6, 5), dtype=np.uint8)).save(tmp_path / "lab" / c / f"{i}.png")
    d = read_folder(tmp_path / "lab")
    assert d["x"].shape == (6, 6, 5, 1) and d["classes"] == ["cat", "dog"]
    assert list(d["y"]) == [0, 0, 0, 1, 1, 1] and d["ids"][3] == "dog/0.png"
    (tmp_path / "flat").mkdir()
    Image.fromarray(rng.integers(0, 255, (6, 5, 3), dtype=np.uint8)).save(tmp_path / "flat" / "a.png")
    Image.fromarray(rng.integers(0, 255, (6, 5), dtype=np.uint8)).save(tmp_path / "flat" / "b.png")
    f = read_folder(tmp_path / "flat")
    assert f["x"].shape == (2, 6, 5, 3) and "y" not in f
    Image.fromarray(rng.integers(0, 255, (7, 5), dtype=np.uint8)).save(tmp_path / "flat" / "c.png")
    with pytest.raises(DataError, match=r"c.png' is 5x7; the first image is 5x6"):
        read_folder(tmp_path / "flat")
