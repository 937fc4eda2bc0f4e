"""The standing fault suite (issue 11): damaged stores, bad arguments, two writers on one
run, interrupts, full disks.

Every fault must end with exit code 2 (130 for an interrupt), exactly one line
``ads: error: ...`` that names where (the store and the array, the option, the run), no
traceback, and nothing written. Real zarr stores of real data (optdigits), damaged on
disk the way a disk, a copy or a person damages them.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cli
from ads import loop as L
from ads._lock import RunLock
from ads.errors import DataError, LockError, OutputError, StoreError
from ads.pool import open_pool, write_pool

ROOT = Path(__file__).resolve().parents[1]
CLASSES = [str(c) for c in range(10)]


def run(args, cache):
    """``cli.main`` as the console script runs it, in this process."""
    import click

    @click.command()
    def entry():
        cli.main([str(a) for a in args])

    return CliRunner().invoke(entry, [], env={"ADS_CACHE": str(cache)})


def one_error_line(r, code=2) -> str:
    """The single ``ads: error:`` line of a failed run (and nothing like a traceback)."""
    lines = [ln for ln in r.output.strip().splitlines() if ln.startswith("ads: error:")]
    assert r.exit_code == code, (r.exit_code, r.output)
    assert len(lines) == 1 and "Traceback" not in r.output, r.output
    return lines[0]


def cli_proc(args, **kw):
    return subprocess.run([sys.executable, "-m", "cli", *map(str, args)], capture_output=True, text=True, cwd=ROOT, **kw)


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in Path(folder).rglob(".*tmp-*")) + sorted(p.name for p in Path(folder).rglob(".*.old-*"))


# ---------------------------------------------------------------- pristine stores, built once
@pytest.fixture(scope="module")
def pristine(tmp_path_factory, digits):
    """Checksummed stores with several chunks per array: features labeled (200) / val
    (150) / pool (600, hidden labels), and the same split as 8x8 images."""
    images, feats, y = digits
    root = tmp_path_factory.mktemp("pristine")
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(y))
    lab, val, pool = perm[:200], perm[200:350], perm[350:950]
    out = {}
    for kind, x in (("features", feats), ("images", images)):
        kw = {"classes": CLASSES, "chunk_rows": 50}
        out[kind] = {
            "labeled": write_pool(root / kind / "labeled.zarr", x[lab], ids=[f"d{i}" for i in lab], y=y[lab], **kw),
            "val": write_pool(root / kind / "val.zarr", x[val], ids=[f"d{i}" for i in val], y=y[val], **kw),
            "pool": write_pool(root / kind / "pool.zarr", x[pool], ids=[f"d{i}" for i in pool], y=np.full(len(pool), -1),
                               hidden={"y": y[pool], "source": np.where(np.arange(len(pool)) % 3, "clean", "noisy")}, **kw),
        }
    return out


# ---------------------------------------------------------------- damage, on disk
def _edit_bytes(rel, how):
    def mutate(path: Path):
        f = path / rel
        b = f.read_bytes()
        if how == "truncated":
            f.write_bytes(b[: len(b) // 2])
        elif how == "garbled":
            f.write_bytes(np.random.default_rng(len(b)).integers(0, 256, len(b), dtype=np.uint8).tobytes())
        elif how == "zeroed":
            f.write_bytes(bytes(len(b)))
        elif how == "flipped":
            f.write_bytes(b[:7] + bytes([b[7] ^ 0x10]) + b[8:])
    return mutate


def _delete(rel):
    return lambda path: (path / rel).unlink()


def _garble_json(rel):
    return lambda path: (path / rel).write_text('{"zarr_format": 3, "node_type": "arr')


def _group(path):
    return zarr.open_group(str(path), mode="r+")


def _attrs(**kv):
    return lambda path: _group(path).attrs.update(kv)


def _replace_array(name, make):
    """Delete array ``name`` and write ``make(old_values)`` in its place (zarr defaults)."""
    def mutate(path):
        g = _group(path)
        old = np.asarray(g[name][:])
        del g[name]
        new = make(old)
        dtype = np.dtypes.StringDType() if new.dtype.kind in "UT" else new.dtype
        g.create_array(name, shape=new.shape, dtype=dtype, chunks=new.shape if new.size else (1,) * new.ndim)[:] = new
    return mutate


def _set(name, index, value):
    def mutate(path):
        _group(path)[name][index] = value
    return mutate


def _del_array(name):
    def mutate(path):
        del _group(path)[name]
    return mutate


def _as_v2(path):
    """The same data as a zarr v2 group (what zarr-python 2 or another tool writes)."""
    src = zarr.open_group(str(path), mode="r")
    data = {n: np.asarray(src[n][:]) for n in ("x", "ids", "y")}
    attrs = dict(src.attrs)
    shutil.rmtree(path)
    g = zarr.open_group(str(path), mode="w", zarr_format=2)
    g.attrs.update(attrs)
    for n, a in data.items():
        a = np.array(a.tolist(), dtype="U") if n == "ids" else a
        g.create_array(n, shape=a.shape, dtype=a.dtype)[:] = a


# (name, store kind, damaged store, mutate, regex the one line must match; the store's path is checked separately)
FAULTS = [
    # chunks that are missing: zarr would read them as fill values
    ("missing x chunk", "features", "labeled", _delete("x/c/1/0"), r"array 'x' is missing chunk x/c/1/0 \(rows 50..99\)"),
    ("missing y chunk", "features", "labeled", _delete("y/c/0"), r"array 'y' is missing chunk y/c/0 \(rows 0..199\)"),
    ("missing ids chunk", "features", "labeled", _delete("ids/c/0"), r"array 'ids' is missing chunk ids/c/0"),
    ("missing x chunk (images)", "images", "labeled", _delete("x/c/3/0/0/0"), r"array 'x' is missing chunk x/c/3/0/0/0"),
    ("missing pool x chunk", "features", "pool", _delete("x/c/11/0"), r"array 'x' is missing chunk x/c/11/0 \(rows 550..599\)"),
    ("missing hidden/y chunk", "features", "pool", _delete("hidden/y/c/1"), r"array 'hidden/y' is missing chunk hidden/y/c/1"),
    # chunk bytes that are damaged: the checksum (or the decoder) refuses them
    ("truncated x chunk", "features", "labeled", _edit_bytes("x/c/2/0", "truncated"), r"array 'x' rows 100..149 cannot be read: .*checksum"),
    ("garbled x chunk", "features", "labeled", _edit_bytes("x/c/0/0", "garbled"), r"array 'x' rows 0..49 cannot be read"),
    ("zeroed x chunk", "features", "labeled", _edit_bytes("x/c/3/0", "zeroed"), r"array 'x' rows 150..199 cannot be read"),
    ("flipped bit in x chunk", "features", "labeled", _edit_bytes("x/c/1/0", "flipped"), r"array 'x' rows 50..99 cannot be read"),
    ("truncated ids chunk", "features", "labeled", _edit_bytes("ids/c/0", "truncated"), r"array 'ids' rows 0..199 cannot be read"),
    ("garbled y chunk", "features", "labeled", _edit_bytes("y/c/0", "garbled"), r"array 'y' rows 0..199 cannot be read"),
    ("zeroed y chunk", "features", "labeled", _edit_bytes("y/c/0", "zeroed"), r"array 'y' rows 0..199 cannot be read"),
    ("garbled x chunk (images)", "images", "labeled", _edit_bytes("x/c/1/0/0/0", "garbled"), r"array 'x' rows 50..99 cannot be read"),
    ("truncated x chunk (images)", "images", "labeled", _edit_bytes("x/c/0/0/0/0", "truncated"), r"array 'x' rows 0..49 cannot be read"),
    ("zeroed pool x chunk (images)", "images", "pool", _edit_bytes("x/c/5/0/0/0", "zeroed"), r"array 'x' rows 250..299 cannot be read"),
    ("garbled hidden/source chunk", "features", "pool", _edit_bytes("hidden/source/c/0", "garbled"), r"array 'hidden/source' rows 0..199 cannot be read"),
    # metadata
    ("garbled x zarr.json", "features", "labeled", _garble_json("x/zarr.json"), r"array 'x' cannot be read: its zarr.json is not valid JSON"),
    ("garbled ids zarr.json", "features", "labeled", _garble_json("ids/zarr.json"), r"array 'ids' cannot be read: its zarr.json is not valid JSON"),
    ("garbled y zarr.json", "features", "labeled", _garble_json("y/zarr.json"), r"array 'y' cannot be read: its zarr.json is not valid JSON"),
    ("garbled group zarr.json", "features", "labeled", _garble_json("zarr.json"), r"is not a zarr v3 group"),
    ("zarr v2 group", "features", "labeled", _as_v2, r"is a zarr v2 group; ads reads zarr v3 stores"),
    ("ids stored as int64", "features", "labeled", _replace_array("ids", lambda a: np.arange(a.size, dtype=np.int64)),
     r"array 'ids' must hold strings. Got int64"),
    ("x of shape (N, 0)", "features", "labeled", _replace_array("x", lambda a: np.zeros((a.shape[0], 0), np.float32)),
     r"array 'x' has shape \(200, 0\): no features"),
    ("empty class list with labels", "features", "labeled", _attrs(classes=[]),
     r"array 'y' has label \d at row 0 but attribute 'classes' is empty"),
    ("duplicate class names", "features", "labeled", _attrs(classes=["0", "1", "2", "3", "4", "5", "6", "7", "8", "8"]),
     r"attribute 'classes' names class '8' more than once"),
    ("wrong schema version", "features", "labeled", _attrs(ads_schema=7), r"has schema version 7"),
    ("unknown kind", "features", "labeled", _attrs(kind="video"), r"has attribute kind='video'"),
    # already handled before issue 11, kept in the table
    ("no array x", "features", "labeled", _del_array("x"), r"has no array 'x'"),
    ("no array ids", "features", "labeled", _del_array("ids"), r"has no array 'ids'"),
    ("NaN in x", "features", "labeled", _set("x", (4, 2), np.nan), r"array 'x' has NaN or inf at row 4"),
    ("inf in pool x", "features", "pool", _set("x", (123, 0), np.inf), r"array 'x' has NaN or inf at row 123"),
    ("label out of range", "features", "labeled", _set("y", 2, 77), r"array 'y' has label 77 at row 2; expected -1 or 0..9"),
    ("label below -1", "features", "labeled", _set("y", 5, -3), r"array 'y' has label -3 at row 5"),
    ("hidden label out of range", "features", "pool", _set("hidden/y", 9, 10), r"array 'hidden/y' has label 10 at row 9"),
    ("y shorter than x", "features", "labeled", _replace_array("y", lambda a: a[:-1]), r"array 'y' has shape \(199,\); 'x' has 200 rows"),
    ("ids shorter than x", "features", "labeled", _replace_array("ids", lambda a: np.array(a[:-1].tolist())), r"array 'ids' has shape \(199,\)"),
    ("float labels", "features", "labeled", _replace_array("y", lambda a: a.astype(np.float32)), r"array 'y' must hold integers"),
    ("duplicate ids", "features", "labeled", _replace_array("ids", lambda a: np.array([a[0], *a[:-1].tolist()])),
     r"array 'ids' has duplicate ids"),
    ("int x in a features store", "features", "labeled", _replace_array("x", lambda a: a.astype(np.int32)),
     r"array 'x' must be float32 of shape \(N, D\)"),
    ("float x in an images store", "images", "labeled", _replace_array("x", lambda a: a.astype(np.float32)),
     r"array 'x' must be uint8 of shape \(N, H, W, C\)"),
]


def _commands(stores, role, damaged, out, workdir):
    """The commands that open stores (pool info, select, score, value, loop start), with
    ``damaged`` in place of the ``role`` store."""
    s = {**{k: str(v) for k, v in stores.items()}, role: str(damaged)}
    trio = ["--pool", s["pool"], "--labeled", s["labeled"], "--val", s["val"]]
    cmds = {
        "pool info": ["pool", "info", s[role]],
        "select": ["select", *trio, "--budget", 5, "--epochs", 1, "--out", out],
        "score": ["score", *trio, "--epochs", 1, "--out", out],
        "value": ["value", "--labeled", s["labeled"], "--val", s["val"], "--epochs", 1, "--out", out],
        "loop start": ["loop", *trio, "--rounds", 1, "--budget", 5, "--epochs", 1, "--workdir", workdir],
    }
    if role == "pool":
        del cmds["value"]  # value never opens the pool
    return cmds


@pytest.mark.parametrize("fault", FAULTS, ids=[f[0] for f in FAULTS])
def test_damaged_store_is_one_line_and_nothing_is_written(tmp_path, pristine, fault):
    name, kind, role, mutate, pattern = fault
    stores = pristine[kind]
    damaged = tmp_path / f"damaged-{role}.zarr"
    shutil.copytree(stores[role], damaged)
    mutate(damaged)
    tried = 0
    for cmd, args in _commands(stores, role, damaged, tmp_path / "out.csv", tmp_path / "run").items():
        r = run(args, tmp_path / "cache")
        line = one_error_line(r)
        assert str(damaged) in line, (name, cmd, line)
        assert re.search(pattern, line), (name, cmd, line)
        assert not (tmp_path / "out.csv").exists() and not (tmp_path / "run").exists(), (name, cmd)
        assert temporaries(tmp_path) == [], (name, cmd)
        tried += 1
    assert tried == (4 if role == "pool" else 5)


def test_damage_after_opening_is_one_store_error(tmp_path, pristine):
    """A chunk damaged after the store was opened (and validated) fails where it is read."""
    for kind in ("features", "images"):
        p = shutil.copytree(pristine[kind]["pool"], tmp_path / f"{kind}.zarr")
        pool = open_pool(p, role="pool")
        _edit_bytes("x/c/2/0" + ("/0/0" if kind == "images" else ""), "garbled")(p)
        _edit_bytes("ids/c/0", "truncated")(p)
        _edit_bytes("hidden/y/c/0", "zeroed")(p)
        _edit_bytes("y/c/1", "garbled")(p)
        where = f"pool '{p}' array"
        with pytest.raises(StoreError, match=re.escape(f"{where} 'x' rows 100..149 cannot be read")):
            list(pool.blocks())
        with pytest.raises(StoreError, match=re.escape(f"{where} 'x' cannot be read")):
            pool.read_x()
        with pytest.raises(StoreError, match=re.escape(f"{where} 'x' cannot be read")):
            pool.take([120, 3])
        np.testing.assert_array_equal(pool.take([3, 1]), open_pool(pristine[kind]["pool"]).take([3, 1]))
        with pytest.raises(StoreError, match=re.escape(f"{where} 'ids' cannot be read")):
            pool.ids()
        with pytest.raises(StoreError, match=re.escape(f"{where} 'y' cannot be read")):
            pool.y()
        with pytest.raises(StoreError, match=re.escape(f"{where} 'hidden/y' cannot be read")):
            pool.hidden("y")


# ---------------------------------------------------------------- checksums
def _chunk_files(store: Path) -> list[str]:
    return sorted(str(p.relative_to(store)) for p in store.rglob("*") if p.is_file() and p.name != "zarr.json")


@pytest.fixture(scope="module")
def small_store(tmp_path_factory, digits):
    _, feats, y = digits
    path = tmp_path_factory.mktemp("small") / "s.zarr"
    write_pool(path, feats[:60], ids=[f"r{i}" for i in range(60)], y=np.where(np.arange(60) % 4, y[:60], -1),
               classes=CLASSES, hidden={"y": y[:60], "source": ["a", "b", "c"] * 20}, chunk_rows=16)
    pool = open_pool(path)
    data = {"x": pool.read_x(), "ids": pool.ids(), "y": pool.y(), "hidden/y": pool.hidden("y"), "source": pool.hidden("source")}
    return path, data, _chunk_files(path)


def test_stores_carry_checksums_on_every_chunk(small_store):
    path, _, files = small_store
    assert open_pool(path).describe()["checksums"] is True
    # 4 chunks of x (60 rows of 16), one of each 1-D array; every chunk is written
    assert [f for f in files if f.startswith("x/")] == ["x/c/0/0", "x/c/1/0", "x/c/2/0", "x/c/3/0"]
    assert {f.split("/c/")[0] for f in files} == {"x", "ids", "y", "hidden/y", "hidden/source"}
    for name in ("x", "ids", "y", "hidden/y", "hidden/source"):
        codecs = json.loads((path / name / "zarr.json").read_text())["codecs"]
        assert codecs[-1] == {"name": "crc32c"} and codecs[-2]["name"] == "zstd", name


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_damage_to_any_chunk_is_never_read_as_data(tmp_path_factory, small_store, data):
    """Flip, overwrite or cut bytes of any chunk file of a checksummed store: the CLI
    either refuses it in one line (exit 2) or, were the damage invisible, reads the very
    same data; never a traceback, never other numbers."""
    path, want, files = small_store
    rel = data.draw(st.sampled_from(files), label="chunk file")
    work = tmp_path_factory.mktemp("flip") / "s.zarr"
    shutil.copytree(path, work)
    f = work / rel
    b = bytearray(f.read_bytes())
    how = data.draw(st.sampled_from(["flip", "set", "cut"]), label="damage")
    if how == "cut":
        b = b[: data.draw(st.integers(0, len(b) - 1), label="keep")]
    else:
        for _ in range(data.draw(st.integers(1, 4), label="bytes")):
            i = data.draw(st.integers(0, len(b) - 1), label="at")
            b[i] = b[i] ^ data.draw(st.integers(1, 255)) if how == "flip" else data.draw(st.integers(0, 255))
    f.write_bytes(bytes(b))
    r = run(["pool", "info", work, "--json"], tmp_path_factory.getbasetemp() / "cache")
    assert "Traceback" not in r.output
    if r.exit_code == 0:  # only if the bytes did not change after all
        pool = open_pool(work)
        got = {"x": pool.read_x(), "ids": pool.ids(), "y": pool.y(), "hidden/y": pool.hidden("y"), "source": pool.hidden("source")}
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
        assert f.read_bytes() == (path / rel).read_bytes()
    else:
        line = one_error_line(r)
        array = rel.split("/c/")[0]
        assert str(work) in line and f"array {array!r}" in line, line


def _write_like_before_checksums(path, x, ids, y, classes):
    """A store as ads wrote it before issue 11: zarr's default codecs (no crc32c), and
    chunks that hold only the fill value not written."""
    g = zarr.open_group(str(path), mode="w", zarr_format=3)
    g.attrs.update({"ads_schema": 1, "kind": "features", "classes": classes})
    g.create_array("x", shape=x.shape, dtype=x.dtype, chunks=(16, x.shape[1]))[:] = x
    g.create_array("ids", shape=ids.shape, dtype=str, chunks=(64,))[:] = ids
    g.create_array("y", shape=y.shape, dtype=y.dtype, chunks=(16,))[:] = y
    return path


def test_stores_written_before_checksums_still_open(tmp_path, digits, feature_stores):
    _, feats, y = digits
    yy = y[:100].copy()
    yy[:16] = 0  # a chunk of class 0 only: the old writer skipped it (the fill value)
    old = _write_like_before_checksums(tmp_path / "old.zarr", feats[:100], np.array([f"o{i}" for i in range(100)]), yy, CLASSES)
    assert not (old / "y" / "c" / "0").exists()
    pool = open_pool(old, role="labeled store")
    np.testing.assert_array_equal(pool.y(), yy)
    info = pool.describe()
    assert info["checksums"] is False and info["labeled"] == 100
    r = run(["pool", "info", old], tmp_path / "cache")
    assert r.exit_code == 0 and "checksums  none: written before ads stored a crc32c checksum per chunk" in r.output
    assert "checksums  none" not in run(["pool", "info", feature_stores["labeled"]], tmp_path / "cache").output
    # and it works as a labeled store
    r = run(["select", "--pool", feature_stores["pool"], "--labeled", old, "--val", feature_stores["val"], "--budget", 5,
             "-q"], tmp_path / "cache")
    assert r.exit_code == 0, r.output
    # a missing x chunk is still damage, checksums or not
    (old / "x" / "c" / "2" / "0").unlink()
    assert re.search(r"array 'x' is missing chunk x/c/2/0 \(rows 32..47\)", one_error_line(run(["pool", "info", old], tmp_path)))


def test_write_refuses_featureless_x(tmp_path):
    with pytest.raises(DataError, match=r"'x' has shape \(5, 0\); every item needs at least one value"):
        write_pool(tmp_path / "z.zarr", np.zeros((5, 0), np.float32))
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- bad arguments
def _bad_arguments(stores, tmp_path):
    p, l, v = (str(stores[k]) for k in ("pool", "labeled", "val"))
    trio = ["--pool", p, "--labeled", l, "--val", v]
    out = tmp_path / "o.csv"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    npz = tmp_path / "f.npz"
    np.savez(npz, x=np.ones((4, 3), np.float32))
    cases = [
        (["select", *trio, "--budget", "ten", "--out", out], r"ads select: Invalid value for '--budget': 'ten' is not a valid integer"),
        (["select", *trio, "--budget", "2.5", "--out", out], r"Invalid value for '--budget'"),
        (["loop", *trio, "--rounds", 1, "--budget", "x", "--workdir", tmp_path / "run"], r"ads loop: Invalid value for '--budget'"),
        (["select", *trio, "--budget", 5, "--seed", -1, "--out", out], r"The 'seed' parameter of ads select must be an int in \[0, 4294967295\]. Got -1"),
        (["select", *trio, "--budget", 5, "--seed", 4294967296, "--out", out], r"'seed' parameter of ads select .* Got 4294967296"),
        (["value", "--labeled", l, "--seed", -1, "--out", out], r"'seed' parameter of ads value"),
        (["score", *trio, "--seed", -1, "--out", out], r"'seed' parameter of ads score"),
        (["loop", *trio, "--rounds", 1, "--budget", 5, "--seed", -1, "--workdir", tmp_path / "run"], r"'seed' parameter of ads loop"),
        (["data", "mnist", tmp_path / "m", "--seed", -1], r"'seed' parameter of ads data mnist"),
        (["data", "cheap-mnist", tmp_path / "m", "--seed", 4294967296], r"'seed' parameter of ads data cheap-mnist"),
        (["demo", "--dir", tmp_path / "m", "--seed", -5], r"'seed' parameter of ads demo"),
        (["select", *trio, "--budget", 5, "--out", ""], r"The '--out' parameter of ads select is empty"),
        (["value", "--labeled", l, "--out", ""], r"The '--out' parameter of ads value is empty"),
        (["pool", "create", "", "--from-npz", npz], r"The 'OUT' parameter of ads pool create is empty"),
        (["loop", *trio, "--rounds", 1, "--budget", 5, "--workdir", ""], r"The '--workdir' parameter of ads loop is empty"),
        (["select", *trio, "--budget", 5, "--out", fifo, "--overwrite"],
         re.escape(f"cannot write --out '{fifo}': it exists and is a FIFO; ads replaces only a regular file")),
        (["select", *trio, "--budget", 5, "--out", folder, "--overwrite"], re.escape(f"cannot write --out '{folder}': it exists and is a directory")),
        (["value", "--labeled", l, "--out", folder / "keep.txt" / "x.csv"], re.escape(f"'{folder / 'keep.txt'}' is not a directory")),
        (["pool", "create", folder, "--from-npz", npz, "--overwrite"], re.escape(f"cannot write store '{folder}': it exists and is not a zarr store")),
        (["pool", "create", fifo, "--from-npz", npz, "--overwrite"], re.escape(f"cannot write store '{fifo}': it exists and is a FIFO")),
        (["loop", *trio, "--rounds", 1, "--budget", 5, "--workdir", tmp_path / "run", "--lock-timeout", -1],
         r"'lock-timeout' parameter of ads loop must be a number of seconds >= 0"),
        (["select", *trio, "--budget", 0, "--out", out], r"'budget' parameter of ads select must be an int >= 1"),
        (["select", *trio, "--budget", 5, "--fraction", 2, "--out", out], r"'fraction' parameter of ads select must be a number in \(0, 1\]"),
    ]
    import torch

    if not torch.cuda.is_available():
        cases += [
            (["select", *trio, "--budget", 5, "--device", "cuda", "--out", out], r"'device' parameter is 'cuda' but torch sees no CUDA GPU"),
            (["value", "--labeled", l, "--device", "cuda", "--out", out], r"'device' parameter is 'cuda'"),
            (["loop", *trio, "--rounds", 1, "--budget", 5, "--device", "cuda", "--workdir", tmp_path / "run"], r"'device' parameter is 'cuda'"),
        ]
    (tmp_path / "o.csv").unlink(missing_ok=True)
    return cases


def test_bad_arguments_are_one_line_and_write_nothing(tmp_path, feature_stores):
    cases = _bad_arguments(feature_stores, tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    for args, pattern in cases:
        r = run(args, tmp_path / "cache")
        line = one_error_line(r)
        assert re.search(pattern, line), (args, line)
        assert sorted(p.name for p in tmp_path.iterdir() if p.name != "cache") == [b for b in before if b != "cache"], args
        assert temporaries(tmp_path) == []
    assert (tmp_path / "fifo").is_fifo() and (tmp_path / "folder" / "keep.txt").read_text() == "mine"
    assert len(cases) >= 23


def test_out_into_a_missing_folder_creates_it_and_says_so(tmp_path, feature_stores):
    out = tmp_path / "new" / "deeper" / "sel.csv"
    r = run(["select", "--pool", feature_stores["pool"], "--labeled", feature_stores["labeled"], "--val",
             feature_stores["val"], "--budget", 5, "--out", out], tmp_path / "cache")
    assert r.exit_code == 0, r.output
    assert f"created directory {out.parent}" in r.output and len(out.read_text().splitlines()) == 6


def test_a_device_node_is_never_replaced(tmp_path):
    """``--out /dev/full`` used to replace the device with a regular file. Checked on a
    FIFO and a symbolic link here (a test must not risk /dev/full itself)."""
    from ads._io import atomic_write_text

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link.csv"
    link.symlink_to(tmp_path / "target.csv")
    for target, kind in ((fifo, "a FIFO"), (link, "a symbolic link"), (tmp_path, "a directory")):
        with pytest.raises(OutputError, match=re.escape(f"cannot write '{target}': it exists and is {kind}")):
            atomic_write_text(target, "x")
    assert fifo.is_fifo() and link.is_symlink() and not (tmp_path / "target.csv").exists()
    if os.path.exists("/dev/full"):  # only the check, never the write
        from ads._io import check_target

        with pytest.raises(OutputError, match=r"'/dev/full': it exists and is a character device"):
            check_target("/dev/full", "file")
        assert not Path("/dev/full").is_file()


# ---------------------------------------------------------------- run state and labels files
@pytest.fixture(scope="module")
def waiting_run(tmp_path_factory, pristine):
    """A run (external oracle) waiting for the labels of round 0, and a good labels file."""
    root = tmp_path_factory.mktemp("waiting")
    stores = pristine["features"]
    cfg = L.LoopConfig(pool=str(stores["pool"]), labeled=str(stores["labeled"]), val=str(stores["val"]), test=None,
                       rounds=2, budget=10, fraction=0.2, oracle="external")
    run_dir = L.start(cfg, root / "run").dir
    from cli import resume_run

    state = resume_run(run_dir, progress=False)
    assert state["stage"] == "label"
    batch = (run_dir / "round-0" / "to_label.csv").read_text().split()[1:]
    pool = open_pool(stores["pool"])
    truth = dict(zip(pool.ids(), pool.hidden("y")))
    labels = root / "labels.csv"
    labels.write_text("id,label\n" + "".join(f"{b},{truth[b]}\n" for b in batch))
    return run_dir, labels, batch


def _copy_run(run_dir, tmp_path):
    return Path(shutil.copytree(run_dir, tmp_path / "run"))


def test_labels_csv_with_bom_is_accepted_and_non_utf8_refused(tmp_path, waiting_run):
    run_dir, labels, batch = waiting_run
    work = _copy_run(run_dir, tmp_path)
    latin = tmp_path / "latin1.csv"
    latin.write_bytes(labels.read_bytes() + b"caf\xe9,1\n")  # Latin-1, as some spreadsheets save
    r = run(["label", work, "--import", latin, "--no-continue"], tmp_path / "cache")
    assert re.search(rf"labels file '{latin}' is not UTF-8 text \(byte \d+\); save it as UTF-8 CSV", one_error_line(r))
    assert L.Run(work).load()["added"] == []
    bom = tmp_path / "excel.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + labels.read_bytes().replace(b"\n", b"\r\n"))
    r = run(["label", work, "--import", bom, "--no-continue", "--json"], tmp_path / "cache")
    assert r.exit_code == 0, r.output
    assert [a[0] for a in L.Run(work).load()["added"]] == batch


@pytest.mark.parametrize("state,pattern", [
    ({}, r"is not a run state: it lacks \['config', 'round', 'stage'"),
    ({"config": {}, "round": 0, "stage": "select", "batch": None, "pending": None, "added": [], "records": []},
     r"run configuration lacks \['budget', 'labeled', 'pool', 'rounds'\]"),
    ({"config": 5, "round": 0, "stage": "select", "batch": None, "pending": None, "added": [], "records": []},
     r"field 'config' must be an object"),
    ("stage", r"field 'stage' must be one of \['select', 'label', 'done'\]. Got 'lunch'"),
    ("rounds", r"run configuration field 'rounds' must be an integer. Got '3'"),
    ("added", r"field 'added' must hold \[id, label, round\] entries"),
    ([1, 2], r"is not a run state"),
])
def test_damaged_run_state_is_one_line(tmp_path, waiting_run, state, pattern):
    run_dir, labels, _ = waiting_run
    work = _copy_run(run_dir, tmp_path)
    good = json.loads((work / "state.json").read_text())
    if state == "stage":
        state = {**good, "stage": "lunch"}
    elif state == "rounds":
        state = {**good, "config": {**good["config"], "rounds": "3"}}
    elif state == "added":
        state = {**good, "added": [["d1", "cat", 0]]}
    (work / "state.json").write_text(json.dumps(state))
    with pytest.raises(StoreError, match=pattern):
        L.Run(work).load()
    for args in (["loop", "--workdir", work, "--resume"], ["label", work, "--import", labels]):
        assert re.search(pattern, one_error_line(run(args, tmp_path / "cache"))), args
    assert json.loads((work / "state.json").read_text()) == state  # untouched


# ---------------------------------------------------------------- the run directory's lock
def test_lock_is_reentrant_exclusive_and_names_the_holder(tmp_path):
    d = tmp_path / "run"
    with RunLock(d, create=True, command="ads test") as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
        with RunLock(d, timeout=0):  # the same thread again: no wait
            pass
        errors = []

        def other_thread():
            try:
                RunLock(d, timeout=0.2).acquire()
            except LockError as e:
                errors.append(str(e))

        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
        assert errors and "in use by another thread of this process" in errors[0]
        code = "import sys; from ads._lock import RunLock; RunLock(sys.argv[1], timeout=0.3).acquire()"
        holder = subprocess.run([sys.executable, "-c", code, str(d)], capture_output=True, text=True, cwd=ROOT)
        assert holder.returncode != 0 and f"is in use by another ads process (pid {os.getpid()}, ads test" in holder.stderr
    assert not d.exists()  # created here, nothing but the lock inside: removed on release


def test_lock_dies_with_its_holder(tmp_path):
    """The kernel drops the lock of a process killed with SIGKILL: no stale lock."""
    d = tmp_path / "run"
    d.mkdir()
    code = "import sys, time; from ads._lock import RunLock; RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code, str(d)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(LockError, match=rf"in use by another ads process \(pid {proc.pid}\b"):
            RunLock(d, timeout=0.1).acquire()
    finally:
        proc.kill()
        proc.wait()
    with RunLock(d, timeout=5):
        pass


def test_second_writer_times_out_naming_the_holder(tmp_path, waiting_run):
    run_dir, labels, _ = waiting_run
    work = _copy_run(run_dir, tmp_path)
    with RunLock(work, command="ads label"):
        for args in (["label", work, "--import", labels, "--no-continue", "--lock-timeout", 0.3],
                     ["loop", "--workdir", work, "--resume", "--lock-timeout", 0.3]):
            r = cli_proc(args)
            assert r.returncode == 2 and r.stdout == "" and r.stderr.count("\n") == 1, r.stderr
            assert f"run directory '{work}' is in use by another ads process (pid {os.getpid()}, ads label" in r.stderr
            assert "waited 0.3 s" in r.stderr
    assert L.Run(work).load()["added"] == []


def test_two_label_imports_at_once_never_lose_labels(tmp_path, waiting_run):
    """Two real processes import labels into one run at the same moment: one adds them,
    the other fails in one line; the state holds the batch's labels exactly once."""
    run_dir, labels, batch = waiting_run
    work = _copy_run(run_dir, tmp_path)
    env = {**os.environ, "ADS_CACHE": str(tmp_path / "cache")}
    with RunLock(work):  # both start while the run is held, then race for it
        procs = [subprocess.Popen([sys.executable, "-m", "cli", "label", str(work), "--import", str(labels), "--no-continue",
                                   "--json", "--lock-timeout", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, cwd=ROOT, env=env) for _ in range(2)]
        time.sleep(2.0)
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    codes = sorted(rc for rc, _, _ in results)
    assert codes == [0, 2], results
    ok = next(out for rc, out, _ in results if rc == 0)
    assert json.loads(ok)["n_added"] == len(batch)
    err = next(e for rc, _, e in results if rc == 2)
    assert err.count("\n") == 1 and "is not waiting for labels (stage 'select')" in err, err
    added = L.Run(work).load()["added"]
    assert [a[0] for a in added] == batch  # exactly once


def test_two_resumes_at_once_run_each_round_once(tmp_path, pristine):
    """Two real ``ads loop --resume`` on one run: the second waits for the first, finds the
    run done, and changes nothing (before the lock both ran every round, and the state
    went backwards)."""
    stores = pristine["features"]
    base = ["--pool", stores["pool"], "--labeled", stores["labeled"], "--val", stores["val"], "--rounds", 3, "--budget", 10,
            "--fraction", 0.2, "-q"]
    ref = cli_proc(["loop", "--workdir", tmp_path / "ref", *base])
    assert ref.returncode == 0, ref.stderr
    work = tmp_path / "run"
    L.start(L.LoopConfig(pool=str(stores["pool"]), labeled=str(stores["labeled"]), val=str(stores["val"]), test=None,
                         rounds=3, budget=10, fraction=0.2), work)
    procs = [subprocess.Popen([sys.executable, "-m", "cli", "loop", "--workdir", str(work), "--resume", "--json",
                               "--lock-timeout", "120"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
             for _ in range(2)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    assert [rc for rc, _, _ in results] == [0, 0], results
    assert all(json.loads(out)["stage"] == "done" for _, out, _ in results)
    assert sum("round 1: 210 labeled" in err for _, _, err in results) == 1, results  # one of them ran the rounds
    got, want = (json.loads((d / "state.json").read_text()) for d in (work, tmp_path / "ref"))
    assert got["added"] == want["added"] and len({a[0] for a in got["added"]}) == 30
    assert [r["round"] for r in L.read_rounds(work)] == [0, 1, 2, 3]


# ---------------------------------------------------------------- interrupts, kills, full disks
def test_stale_temporary_files_are_removed_by_the_next_write(tmp_path):
    from ads._io import atomic_write_text

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(gone.stdout)  # a process that has exited
    stale = [tmp_path / f".o.csv.tmp-{dead}-x1y2z3.csv", tmp_path / ".o.csv.tmp-ab12cd34.csv"]
    for f in stale:
        f.write_text("half")
    live = tmp_path / f".o.csv.tmp-{os.getpid()}-busy.csv"
    live.write_text("in progress")
    other = tmp_path / f".other.csv.tmp-{dead}-zz.csv"  # another target's: not ours to touch
    other.write_text("x")
    atomic_write_text(tmp_path / "o.csv", "id\n")
    assert not any(f.exists() for f in stale) and live.exists() and other.exists()
    assert (tmp_path / "o.csv").read_text() == "id\n"


@pytest.fixture(scope="module")
def big_npz(tmp_path_factory):
    """A 400,000 x 64 features npz (98 MiB): its store takes a while to write."""
    path = tmp_path_factory.mktemp("big") / "big.npz"
    np.savez(path, x=np.random.default_rng(0).standard_normal((400_000, 64), dtype=np.float32))
    return path


def _start_and_wait_for_temp(args, folder, name):
    proc = subprocess.Popen([sys.executable, "-m", "cli", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if any((p / "x" / "c").exists() for p in folder.glob(f".{name}.tmp-*")):
            return proc
        time.sleep(0.002)
    proc.kill()
    pytest.fail(f"no temporary store appeared: {proc.communicate()}")


def test_sigint_during_pool_create_prints_one_line_and_leaves_no_temp(tmp_path, big_npz):
    target = tmp_path / "big.zarr"
    proc = _start_and_wait_for_temp(["pool", "create", target, "--from-npz", big_npz], tmp_path, "big.zarr")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err == "ads: interrupted\n", err
    time.sleep(0.2)
    assert temporaries(tmp_path) == []
    if target.exists():  # the signal landed after the rename: then the store is whole
        assert open_pool(target).n == 400_000


def test_sigkill_leaves_a_temp_that_the_next_write_removes(tmp_path, big_npz, digits):
    target = tmp_path / "big.zarr"
    proc = _start_and_wait_for_temp(["pool", "create", target, "--from-npz", big_npz], tmp_path, "big.zarr")
    proc.kill()
    proc.wait()
    left = temporaries(tmp_path)
    assert left and all(n.startswith(f".big.zarr.tmp-{proc.pid}-") for n in left)
    older = tmp_path / ".big.zarr.tmp-k3j2h1g0"  # left by an ads that did not record pids
    older.mkdir()
    live = tmp_path / f".big.zarr.tmp-{os.getpid()}-busy"  # a write in progress: kept
    live.mkdir()
    np.savez(tmp_path / "small.npz", x=digits[1][:20])
    r = run(["pool", "create", target, "--from-npz", tmp_path / "small.npz", "--overwrite"], tmp_path / "cache")
    assert r.exit_code == 0, r.output
    assert temporaries(tmp_path) == [live.name]
    assert f"removed {tmp_path / left[0]}, left by an interrupted write of {target}" in r.output
    assert open_pool(target).n == 20


def _file_size_limit(limit):
    def pre():
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return pre


def test_full_disk_real_file_size_limit(tmp_path, big_npz, feature_stores):
    """A real write failure from the kernel (a per-process file-size limit, EFBIG): one
    line naming the user's output, no temporary left, no output."""
    store = cli_proc(["pool", "create", tmp_path / "lim.zarr", "--from-npz", big_npz], preexec_fn=_file_size_limit(1 << 20))
    assert store.returncode == 2 and store.stderr == f"ads: error: ads pool create: cannot write store '{tmp_path / 'lim.zarr'}': File too large.\n"
    out = tmp_path / "sel.csv"
    csv = cli_proc(["select", "--pool", feature_stores["pool"], "--labeled", feature_stores["labeled"], "--budget", 20,
                    "--out", out, "--no-cache", "-q"], preexec_fn=_file_size_limit(100))
    assert csv.returncode == 2 and csv.stderr == f"ads: error: ads select: cannot write '{out}': File too large.\n"
    assert temporaries(tmp_path) == [] and not (tmp_path / "lim.zarr").exists() and not out.exists()


def test_full_disk_simulated_enospc_in_zarr(tmp_path, monkeypatch, digits):
    """ENOSPC from zarr's chunk writer (simulated: a tmpfs needs a mount), mid-store."""
    import zarr.storage._local as local

    real, calls = local._put, []

    def put(path, value, *args, **kw):
        calls.append(path)
        if len(calls) > 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, value, *args, **kw)

    monkeypatch.setattr(local, "_put", put)
    np.savez(tmp_path / "f.npz", x=digits[1][:400], y=digits[2][:400])
    r = run(["pool", "create", tmp_path / "f.zarr", "--from-npz", tmp_path / "f.npz", "-q"], tmp_path / "cache")
    assert one_error_line(r) == f"ads: error: ads pool create: cannot write store '{tmp_path / 'f.zarr'}': No space left on device."
    time.sleep(0.1)
    assert len(calls) > 3 and temporaries(tmp_path) == [] and not (tmp_path / "f.zarr").exists()
