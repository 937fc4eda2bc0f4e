"""Real inputs for ``ads pool create``: image manifests and folders of any size and mode,
streamed; vectors from .npy / .npz / parquet into features stores (issue 14, parts 2-3).

Images are generated with Pillow in flat colours, so what a resize, a crop, a pad or a
mode conversion must give is known without Pillow (ITU-R 601-2 luma for L).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ads.pool as pool_mod
from ads.pool import open_pool, write_pool
from tests.test_cli import run


def _luma(rgb):
    r, g, b = rgb
    return int(np.floor((r * 299 + g * 587 + b * 114) / 1000 + 0.5))


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} | {p.name for p in folder.glob(".*")}


def one_error_line(r) -> str:
    lines = [ln for ln in r.output.strip().splitlines() if "ads: error:" in ln]
    assert r.exit_code == 2 and len(lines) == 1 and "Traceback" not in r.output, r.output
    return lines[0][lines[0].index("ads: error:"):]


def _store_files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- generated image files
COLOURS = {"a.png": ("L", (30, 20), 100), "b.jpg": ("RGB", (17, 40), (200, 50, 10)),
           "c.webp": ("RGBA", (25, 50), (10, 200, 30, 255)), "d.png": ("P", (12, 12), (0, 0, 255)),
           "e.png": ("RGBA", (9, 14), (5, 5, 5, 0)), "f.png": ("LA", (16, 12), (60, 255))}


def _make(path: Path, mode, wh, colour):
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "P":
        im = Image.new("RGB", wh, colour).convert("P", palette=Image.Palette.ADAPTIVE)
    else:
        im = Image.new(mode, wh, colour)
    im.save(path, **({"lossless": True} if path.suffix == ".webp" else {"quality": 95} if path.suffix == ".jpg" else {}))


def _expected_rgb(mode, colour):
    if mode == "L":
        return (colour,) * 3
    if mode == "LA":
        v, a = colour
        return (v,) * 3 if a == 255 else (255,) * 3
    if mode == "RGBA":
        return colour[:3] if colour[3] == 255 else (255, 255, 255)  # transparent over white
    return colour


@pytest.fixture
def images(tmp_path):
    root = tmp_path / "img"
    for name, (mode, wh, colour) in COLOURS.items():
        _make(root / name, mode, wh, colour)
    return root


def _manifest(path: Path, rows, header=("path", "label", "id")):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(",".join(header) + "\n" + "".join(",".join(r) + "\n" for r in rows))
    return path


def test_manifest_any_size_and_mode_resized_converted_labels_ids(tmp_path, images):
    names = list(COLOURS)
    labels = ["cat", "", "dog", "cat", "", "dog"]
    # the manifest lives elsewhere: its paths are relative to its own folder, not the cwd
    m = _manifest(tmp_path / "lists" / "m.csv", [(f"../img/{n}", lab, f"id-{n}") for n, lab in zip(names, labels)])
    r = run(["pool", "create", tmp_path / "rgb.zarr", "--from-csv", m, "--size", "12x16", "--json", "-q"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["shape"] == [6, 12, 16, 3] and info["classes"] == ["cat", "dog"] and info["labeled"] == 4
    p = open_pool(tmp_path / "rgb.zarr")
    assert list(p.ids()) == [f"id-{n}" for n in names]
    assert list(p.y()) == [0, -1, 1, 0, -1, 1]
    x = p.read_x().astype(int)
    for i, n in enumerate(names):
        mode, _, colour = COLOURS[n]
        want = np.array(_expected_rgb(mode, colour))
        tol = 3 if n.endswith(".jpg") else 0
        assert np.abs(x[i] - want).max() <= tol, (n, x[i][0, 0], want)
    r = run(["pool", "create", tmp_path / "grey.zarr", "--from-csv", m, "--size", "8", "--mode", "L", "-q"])
    assert r.exit_code == 0, r.output
    g = open_pool(tmp_path / "grey.zarr").read_x().astype(int)
    assert g.shape == (6, 8, 8, 1)
    for i, n in enumerate(names):
        mode, _, colour = COLOURS[n]
        want = _luma(_expected_rgb(mode, colour))
        assert np.abs(g[i] - want).max() <= (3 if n.endswith(".jpg") else 1), (n, g[i][0, 0, 0], want)


def test_fit_crop_and_pad_geometry(tmp_path):
    wide = np.zeros((20, 60, 3), np.uint8)
    wide[:, :20] = (255, 0, 0)
    wide[:, 20:40] = (0, 255, 0)  # the centre square
    wide[:, 40:] = (0, 0, 255)
    Image.fromarray(wide).save(tmp_path / "w.png")
    m = _manifest(tmp_path / "m.csv", [("w.png",)], header=("path",))
    assert run(["pool", "create", tmp_path / "c.zarr", "--from-csv", m, "--size", "20", "--fit", "crop", "-q"]).exit_code == 0
    np.testing.assert_array_equal(open_pool(tmp_path / "c.zarr").read_x()[0], np.broadcast_to([0, 255, 0], (20, 20, 3)))
    Image.new("RGB", (40, 20), (9, 99, 199)).save(tmp_path / "w.png")
    assert run(["pool", "create", tmp_path / "p.zarr", "--from-csv", m, "--size", "20", "--fit", "pad", "-q"]).exit_code == 0
    x = open_pool(tmp_path / "p.zarr").read_x()[0]  # scaled to 20x10, centred: 5 black rows above and below
    np.testing.assert_array_equal(x[:5], 0)
    np.testing.assert_array_equal(x[15:], 0)
    np.testing.assert_array_equal(x[5:15], np.broadcast_to([9, 99, 199], (10, 20, 3)))
    assert run(["pool", "create", tmp_path / "s.zarr", "--from-csv", m, "--size", "20", "-q"]).exit_code == 0
    np.testing.assert_array_equal(open_pool(tmp_path / "s.zarr").read_x()[0], np.broadcast_to([9, 99, 199], (20, 20, 3)))


def test_default_size_and_mode(tmp_path):
    for i in range(3):
        _make(tmp_path / "g" / f"{i}.png", "L", (7, 5), 40 * i)
    _make(tmp_path / "g" / "p.png", "P", (7, 5), (77, 77, 77))  # a palette of greys is grey
    m = _manifest(tmp_path / "m.csv", [(f"g/{n}",) for n in ("0.png", "1.png", "2.png", "p.png")], header=("path",))
    r = run(["pool", "create", tmp_path / "g.zarr", "--from-csv", m, "--json", "-q"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["shape"] == [4, 5, 7, 1]  # size kept (all 7x5), mode L
    _make(tmp_path / "g" / "c.jpg", "RGB", (7, 5), (200, 0, 0))
    m2 = _manifest(tmp_path / "m2.csv", [("g/0.png",), ("g/c.jpg",)], header=("path",))
    r = run(["pool", "create", tmp_path / "c.zarr", "--from-csv", m2, "--json", "-q"])
    assert json.loads(r.stdout)["shape"] == [2, 5, 7, 3]  # one colour image: RGB
    _make(tmp_path / "g" / "big.png", "L", (8, 5), 0)
    m3 = _manifest(tmp_path / "m3.csv", [("g/0.png",), ("g/1.png",), ("g/big.png",)], header=("path",))
    before = _files(tmp_path)
    line = one_error_line(run(["pool", "create", tmp_path / "x.zarr", "--from-csv", m3, "-q"]))
    assert line == (f"ads: error: ads pool create: manifest '{m3}' row 3: image 'g/big.png' is 8x5; the first image is 7x5: "
                    f"pass --size N or --size HxW to bring every image to one size (224 suits the pretrained embedder).")
    assert _files(tmp_path) == before


def test_bad_files_one_line_exit_2_nothing_written_or_skipped_with_report(tmp_path, images):
    (tmp_path / "img" / "junk.png").write_bytes(b"this is not a png")
    good = (images / "a.png").read_bytes()
    (tmp_path / "img" / "cut.png").write_bytes(good[: len(good) // 2])  # a valid header: fails only when decoded
    rows = [("a.png", "cat", ""), ("junk.png", "dog", ""), ("gone.png", "", ""), ("b.jpg", "dog", ""), ("cut.png", "", "")]
    m = _manifest(images / "m.csv", [r[:2] for r in rows], header=("path", "label"))
    before = _files(tmp_path)
    out = tmp_path / "o.zarr"
    line = one_error_line(run(["pool", "create", out, "--from-csv", m, "--size", "8", "-q"]))
    assert line == (f"ads: error: ads pool create: manifest '{m}' row 2: image 'junk.png' cannot be read (not an image "
                    f"Pillow can read); --skip-bad skips unreadable files and lists them in o.zarr.skipped.csv.")
    assert _files(tmp_path) == before  # no store, no temporary, no report
    m2 = _manifest(images / "m2.csv", [("a.png",), ("gone.png",)], header=("path",))
    line = one_error_line(run(["pool", "create", out, "--from-csv", m2, "--size", "8", "--mode", "L", "-q"]))
    assert f"manifest '{m2}' row 2: image 'gone.png' cannot be read (no such file)" in line
    m3 = _manifest(images / "m3.csv", [("a.png",), ("cut.png",)], header=("path",))
    line = one_error_line(run(["pool", "create", out, "--from-csv", m3, "-q"]))  # passes the header scan
    assert f"manifest '{m3}' row 2: image 'cut.png' cannot be read (" in line
    assert _files(tmp_path) == before | {"img/m2.csv", "img/m3.csv"}

    r = run(["pool", "create", out, "--from-csv", m, "--size", "8", "--skip-bad", "--json", "-q"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["n"] == 2 and info["skipped"] == 3 and info["skipped_report"] == str(tmp_path / "o.zarr.skipped.csv")
    p = open_pool(out)
    assert list(p.ids()) == ["a.png", "b.jpg"] and list(p.y()) == [0, 1] and p.classes == ["cat", "dog"]
    report = (tmp_path / "o.zarr.skipped.csv").read_text().splitlines()
    assert report[0] == "path,reason" and [ln.split(",")[0] for ln in report[1:]] == ["junk.png", "gone.png", "cut.png"]
    assert report[1:3] == ["junk.png,not an image Pillow can read", "gone.png,no such file"]
    assert "skipped    3 unreadable files, listed in" in run(["pool", "create", out, "--from-csv", m, "--size", "8",
                                                             "--skip-bad", "--overwrite"]).stdout


def test_folder_mixed_sizes_and_modes_and_like(tmp_path):
    rng = np.random.default_rng(0)
    lab = write_pool(tmp_path / "lab.zarr", rng.integers(0, 255, (6, 8, 8), dtype=np.uint8), y=[0, 1, 2, 0, 1, 2],
                     classes=["cat", "dog", "fox"])
    _make(tmp_path / "f" / "cat" / "1.jpg", "RGB", (30, 20), (250, 10, 10))
    _make(tmp_path / "f" / "cat" / "2.png", "L", (8, 8), 90)
    _make(tmp_path / "f" / "fox" / "3.png", "RGBA", (11, 13), (0, 0, 250, 255))
    folder = tmp_path / "f"
    line = one_error_line(run(["pool", "create", tmp_path / "a.zarr", "--from-folder", folder, "-q"]))
    assert "is 8x8; the first image is 30x20: pass --size" in line and "2.png" in line
    r = run(["pool", "create", tmp_path / "a.zarr", "--from-folder", folder, "--size", "8", "--json", "-q"])
    info = json.loads(r.stdout)
    assert info["shape"] == [3, 8, 8, 3] and info["classes"] == ["cat", "fox"]  # mixed folder: RGB
    r = run(["pool", "create", tmp_path / "l.zarr", "--from-folder", folder, "--like", lab, "--json", "-q"])
    assert r.exit_code == 0, r.output
    p = open_pool(tmp_path / "l.zarr")  # the labeled store's mode (L), size (8x8) and classes
    assert p.item_shape == (8, 8, 1) and p.classes == ["cat", "dog", "fox"] and list(p.y()) == [0, 0, 2]
    assert list(p.ids()) == ["cat/1.jpg", "cat/2.png", "fox/3.png"]
    x = p.read_x()[..., 0].astype(int)
    assert abs(x[0] - _luma((250, 10, 10))).max() <= 3 and (x[1] == 90).all() and abs(x[2] - _luma((0, 0, 250))).max() <= 1
    line = one_error_line(run(["pool", "create", tmp_path / "m.zarr", "--from-folder", folder, "--like", lab, "--mode", "RGB"]))
    assert "--mode RGB differs from the L images of --like" in line
    (folder / "owl").mkdir()
    _make(folder / "owl" / "4.png", "L", (8, 8), 1)
    line = one_error_line(run(["pool", "create", tmp_path / "m.zarr", "--from-folder", folder, "--like", lab]))
    assert "sub-folder 'owl' is not a class of --like" in line


def test_streamed_manifest_equals_the_in_memory_store(tmp_path, monkeypatch):
    """Several chunks (a small chunk-size knob): the store the streamed import writes is
    byte for byte the store write_pool writes from the decoded images held in memory."""
    from ads.image_files import load_image

    monkeypatch.setattr(pool_mod, "_CHUNK_BYTES", 600)  # 8x8x3 = 192 bytes a row: 3 rows a chunk, 12 a zarr call
    rng = np.random.default_rng(1)
    src = tmp_path / "imgs"
    src.mkdir()
    rows = []
    for i in range(31):
        h, w = rng.integers(5, 30, 2)
        mode = ["L", "RGB", "RGBA"][i % 3]
        arr = rng.integers(0, 255, (h, w) if mode == "L" else (h, w, len(mode)), dtype=np.uint8)
        name = f"i{i:02d}.{'png' if i % 2 else 'webp'}"
        Image.fromarray(arr, mode).save(src / name, **({"lossless": True} if name.endswith("webp") else {}))
        rows.append((name, ["a", "b", ""][i % 3], f"r{i}"))
    m = _manifest(src / "m.csv", rows)
    r = run(["pool", "create", tmp_path / "s.zarr", "--from-csv", m, "--size", "8", "-q"])
    assert r.exit_code == 0, r.output
    x = np.stack([load_image(src / n, "RGB", (8, 8)) for n, _, _ in rows])
    y = [[0, 1, -1][i % 3] for i in range(31)]
    write_pool(tmp_path / "m.zarr", x, ids=[r[2] for r in rows], y=y, classes=["a", "b"])
    streamed, memory = _store_files(tmp_path / "s.zarr"), _store_files(tmp_path / "m.zarr")
    assert sum(k.startswith("x/c/") for k in streamed) == 11  # ceil(31 / 3) chunks
    assert streamed.keys() == memory.keys()
    for k in memory:
        assert streamed[k] == memory[k], k
    # the folder import streams through the same reader and writer
    from ads.image_files import read_folder

    d = read_folder(src, size=8, mode="RGB")
    np.testing.assert_array_equal(d["x"], x)


def test_skipped_rows_leave_a_valid_store(tmp_path, monkeypatch):
    monkeypatch.setattr(pool_mod, "_CHUNK_BYTES", 64)  # 4x4 L = 16 bytes a row: 4 rows a chunk
    rows = []
    for i in range(20):
        if i % 3 == 1:
            (tmp_path / f"{i}.png").write_bytes(b"broken")
        else:
            Image.new("L", (4, 4), i).save(tmp_path / f"{i}.png")
        rows.append((f"{i}.png",))
    m = _manifest(tmp_path / "m.csv", rows, header=("path",))
    r = run(["pool", "create", tmp_path / "s.zarr", "--from-csv", m, "--size", "4", "--mode", "L", "--skip-bad", "-q"])
    assert r.exit_code == 0, r.output
    p = open_pool(tmp_path / "s.zarr")  # validated: every chunk present, shapes agree
    kept = [i for i in range(20) if i % 3 != 1]
    assert list(p.ids()) == [f"{i}.png" for i in kept]
    np.testing.assert_array_equal(p.read_x()[:, 0, 0, 0], kept)


# ---------------------------------------------------------------- bring your own embeddings
def test_npy_round_trip_with_ids_and_labels(tmp_path, monkeypatch):
    monkeypatch.setattr(pool_mod, "_CHUNK_BYTES", 256)  # 8 float32 = 32 bytes a row: 8 rows a chunk
    rng = np.random.default_rng(2)
    x = rng.standard_normal((101, 8))  # float64 on disk, float32 in the store
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "ids.txt").write_text("".join(f"p{i}\n" for i in range(101)))
    y = rng.integers(-1, 3, 101)
    np.save(tmp_path / "y.npy", y)
    r = run(["pool", "create", tmp_path / "f.zarr", "--from-npy", tmp_path / "x.npy", "--ids", tmp_path / "ids.txt",
             "--labels", tmp_path / "y.npy", "--json", "-q"])
    assert r.exit_code == 0, r.output
    p = open_pool(tmp_path / "f.zarr")
    assert p.kind == "features" and p.x.dtype == np.float32 and p.chunk_rows == 8
    np.testing.assert_array_equal(p.read_x(), x.astype(np.float32))
    assert list(p.ids()) == [f"p{i}" for i in range(101)] and list(p.y()) == list(y) and p.classes == ["0", "1", "2"]
    names = np.array(["dog", "", "cat"])[np.arange(101) % 3]
    (tmp_path / "names.txt").write_text("\n".join(names) + "\n")
    np.save(tmp_path / "ids.npy", np.arange(101) * 7)
    r = run(["pool", "create", tmp_path / "n.zarr", "--from-npy", tmp_path / "x.npy", "--ids", tmp_path / "ids.npy",
             "--labels", tmp_path / "names.txt", "--classes", "cat,dog", "-q"])
    assert r.exit_code == 0, r.output
    n = open_pool(tmp_path / "n.zarr")
    assert n.classes == ["cat", "dog"] and list(n.y()[:3]) == [1, -1, 0] and n.ids()[2] == "14"
    line = one_error_line(run(["pool", "create", tmp_path / "e.zarr", "--from-npy", tmp_path / "x.npy", "--labels",
                               tmp_path / "names.txt", "--classes", "cat,owl"]))
    assert f"npy file '{tmp_path / 'x.npy'}' row 0: label 'dog' is not one of the 2 classes (cat, owl)" in line


def test_npz_round_trip_and_x_key(tmp_path):
    rng = np.random.default_rng(3)
    emb = rng.standard_normal((30, 5)).astype(np.float32)
    np.savez(tmp_path / "e.npz", emb=emb, ids=np.array([f"q{i}" for i in range(30)]), y=np.arange(30) % 2)
    line = one_error_line(run(["pool", "create", tmp_path / "e.zarr", "--from-npz", tmp_path / "e.npz"]))
    assert "has no key 'x'" in line
    r = run(["pool", "create", tmp_path / "e.zarr", "--from-npz", tmp_path / "e.npz", "--x-key", "emb", "-q"])
    assert r.exit_code == 0, r.output
    p = open_pool(tmp_path / "e.zarr")
    np.testing.assert_array_equal(p.read_x(), emb)
    assert p.ids()[29] == "q29" and list(p.y()[:4]) == [0, 1, 0, 1] and p.classes == ["0", "1"]
    line = one_error_line(run(["pool", "create", tmp_path / "f.zarr", "--from-npy", tmp_path / "x.npy", "--x-key", "emb"]))
    assert "--x-key applies to --from-npz, not --from-npy" in line


def test_nan_row_is_one_line_and_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.setattr(pool_mod, "_CHUNK_BYTES", 64)  # the NaN sits in a later chunk than the first written
    x = np.ones((50, 4), np.float32)
    x[37, 2] = np.nan
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "ids.txt").write_text("".join(f"p{i}\n" for i in range(50)))
    before = _files(tmp_path)
    line = one_error_line(run(["pool", "create", tmp_path / "f.zarr", "--from-npy", tmp_path / "x.npy", "--ids",
                               tmp_path / "ids.txt"]))
    assert line == f"ads: error: ads pool create: npy file '{tmp_path / 'x.npy'}': 'x' has NaN or inf at row 37 (id 'p37')."
    assert _files(tmp_path) == before


def test_parquet_round_trips(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rng = np.random.default_rng(4)
    x = rng.standard_normal((40, 6)).astype(np.float32)
    labels = ["cat", None, "dog", ""] * 10
    t = pa.table({"id": [f"v{i}" for i in range(40)], "label": labels,
                  "embedding": pa.array(list(x), type=pa.list_(pa.float32()))})
    pq.write_table(t, tmp_path / "l.parquet", row_group_size=7)
    r = run(["pool", "create", tmp_path / "l.zarr", "--from-parquet", tmp_path / "l.parquet", "-q"])
    assert r.exit_code == 0, r.output
    p = open_pool(tmp_path / "l.zarr")
    np.testing.assert_array_equal(p.read_x(), x)
    assert list(p.ids()[:2]) == ["v0", "v1"] and p.classes == ["cat", "dog"] and list(p.y()[:4]) == [0, -1, 1, -1]
    # fixed-size lists, integer labels, --like takes the labeled store's classes
    t = pa.table({"embedding": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), 6), "label": [-1, 1] * 20})
    pq.write_table(t, tmp_path / "f.parquet")
    r = run(["pool", "create", tmp_path / "f.zarr", "--from-parquet", tmp_path / "f.parquet", "--like", tmp_path / "l.zarr", "-q"])
    assert r.exit_code == 0, r.output
    f = open_pool(tmp_path / "f.zarr")
    np.testing.assert_array_equal(f.read_x(), x)
    assert f.classes == ["cat", "dog"] and list(f.y()[:2]) == [-1, 1] and f.ids()[39] == "39"
    # all-numeric columns
    cols = {f"d{j}": x[:, j].astype(np.float64) for j in range(6)}
    pq.write_table(pa.table({"id": np.arange(40), **cols}), tmp_path / "c.parquet")
    assert run(["pool", "create", tmp_path / "c.zarr", "--from-parquet", tmp_path / "c.parquet", "-q"]).exit_code == 0
    np.testing.assert_array_equal(open_pool(tmp_path / "c.zarr").read_x(), x)
    # a NaN, a ragged row, a text column: one line each, nothing written
    bad = x.copy()
    bad[23, 0] = np.nan
    pq.write_table(pa.table({"embedding": pa.array(list(bad), type=pa.list_(pa.float32()))}), tmp_path / "n.parquet",
                   row_group_size=5)
    line = one_error_line(run(["pool", "create", tmp_path / "n.zarr", "--from-parquet", tmp_path / "n.parquet"]))
    assert line.endswith(f"parquet file '{tmp_path / 'n.parquet'}': 'x' has NaN or inf at row 23.")
    ragged = [list(v) for v in x]
    ragged[11] = ragged[11][:5]
    pq.write_table(pa.table({"embedding": ragged}), tmp_path / "r.parquet")
    line = one_error_line(run(["pool", "create", tmp_path / "r.zarr", "--from-parquet", tmp_path / "r.parquet"]))
    assert "row 11: 'embedding' has 5 values; row 0 has 6." in line
    pq.write_table(pa.table({"d0": x[:, 0], "note": ["a"] * 40}), tmp_path / "t.parquet")
    line = one_error_line(run(["pool", "create", tmp_path / "t.zarr", "--from-parquet", tmp_path / "t.parquet"]))
    assert "column 'note' (string) is not numeric" in line
    assert not any(p.name.startswith((".n.zarr", ".r.zarr", ".t.zarr", "n.zarr", "r.zarr", "t.zarr")) for p in tmp_path.iterdir())


def test_parquet_without_pyarrow_says_what_to_install(tmp_path, monkeypatch):
    (tmp_path / "v.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if pyarrow were not installed: its import fails
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    line = one_error_line(run(["pool", "create", tmp_path / "v.zarr", "--from-parquet", tmp_path / "v.parquet"]))
    assert line == ("ads: error: ads pool create: --from-parquet needs pyarrow: pip install pyarrow (or the extra: "
                    "pip install 'ads[parquet]').")


def test_select_on_own_embeddings_needs_no_training(tmp_path, digits):
    """The README's example: vectors in .npy -> features stores -> ads select."""
    _, feats, y = digits
    for name, rows in (("lab", slice(0, 300)), ("val", slice(300, 450)), ("pool", slice(450, 850))):
        np.save(tmp_path / f"{name}.npy", feats[rows])
        (tmp_path / f"{name}_ids.txt").write_text("".join(f"{name}{i}\n" for i in range(len(feats[rows]))))
    np.save(tmp_path / "lab_y.npy", y[:300])
    np.save(tmp_path / "val_y.npy", y[300:450])
    for name in ("lab", "val"):
        assert run(["pool", "create", tmp_path / f"{name}.zarr", "--from-npy", tmp_path / f"{name}.npy", "--ids",
                    tmp_path / f"{name}_ids.txt", "--labels", tmp_path / f"{name}_y.npy", "-q"]).exit_code == 0
    assert run(["pool", "create", tmp_path / "pool.zarr", "--from-npy", tmp_path / "pool.npy", "--ids",
                tmp_path / "pool_ids.txt", "--like", tmp_path / "lab.zarr", "-q"]).exit_code == 0
    r = run(["select", "--pool", tmp_path / "pool.zarr", "--labeled", tmp_path / "lab.zarr", "--val", tmp_path / "val.zarr",
             "--budget", 10, "--out", tmp_path / "sel.csv", "-q"], tmp_path)
    assert r.exit_code == 0, r.output
    picked = (tmp_path / "sel.csv").read_text().splitlines()[1:]
    assert len(picked) == 10 and all(ln.startswith("pool") for ln in picked)


def test_exif_orientation_16_bit_grey_and_numeric_class_names(tmp_path):
    a = np.zeros((10, 20, 3), np.uint8)
    a[:, :10] = 255  # left half white, as stored; orientation 6 means "turn 90 degrees clockwise to view"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(a).save(tmp_path / "turned.jpg", exif=exif, quality=100)
    Image.fromarray(np.full((10, 20), 26214, np.uint16)).save(tmp_path / "deep.png")  # 16-bit grey, 26214 / 257 = 102
    m = _manifest(tmp_path / "m.csv", [("turned.jpg", "10"), ("deep.png", "2")], header=("path", "label"))
    r = run(["pool", "create", tmp_path / "t.zarr", "--from-csv", m, "--size", "20x10", "--json", "-q"])
    assert r.exit_code == 0, r.output
    p = open_pool(tmp_path / "t.zarr")
    assert p.classes == ["2", "10"] and list(p.y()) == [1, 0]  # integer names sorted as numbers
    x = p.read_x().astype(int)
    assert (x[1] == 102).all()
    upright = x[0, :, :, 0]  # 20 high, 10 wide: the white half is now the top
    assert upright[:8].min() > 240 and upright[12:].max() < 15
    r = run(["pool", "create", tmp_path / "k.zarr", "--from-csv", m, "--json", "-q"])
    assert "'deep.png' is 20x10; the first image is 10x20" in r.output  # the header scan sees the turned size
