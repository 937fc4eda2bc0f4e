"""Embeddings and class probabilities: a network trained from scratch, or a pretrained one.

Image stores: with ``arch='efficientnet-lite0'`` (``--embedder``) a frozen ImageNet
backbone and a linear head trained on its embeddings (:mod:`ads.pretrained`); otherwise a network (a small CNN for small images, or torchvision's ResNet-18 adapted
to small images: 3x3 stem, stride 1, no max-pool) is trained on the labeled set and
early-stopped on the validation accuracy; the pre-logit activations are the embeddings.
Features stores: the embeddings are the stored features, unchanged; probabilities come
from a multinomial logistic-regression head trained on the labeled features.

Embeddings are cached on disk, keyed by the stores' fingerprints and the configuration,
so repeated runs on the same stores reuse them (``ads select`` and ``ads value`` share
the cache).

The steps are separate functions: :func:`fit_embedder` trains on the labeled data,
:func:`transform_store` streams a store through the trained model chunk by chunk, and
:func:`embed_stores` does both for a task with the cache in front.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ads._io import atomic_dir
from ads._validation import SCORE_BLOCK_ROWS, check_choice, check_int, check_seed
from ads.errors import ParameterError

logger = logging.getLogger(__name__)

ARCHS = ("auto", "cnn", "resnet18", "efficientnet-lite0")
#: The pretrained backbones among ARCHS (ads.pretrained): frozen, with a linear head.
PRETRAINED = ("efficientnet-lite0",)


@dataclass
class EmbedConfig:
    """Training configuration of the embedding network."""

    arch: str = "auto"
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 5e-4
    patience: int = 5
    seed: int = 0
    device: str = "auto"
    #: Pixels (square) the pretrained backbone sees; 0: auto (ads.pretrained.auto_input_size).
    input_size: int = 0

    def validate(self) -> EmbedConfig:
        owner = "the embedding network"
        check_choice(self.arch, ARCHS, "arch", owner)
        check_int(self.epochs, "epochs", owner, min_value=1)
        check_int(self.batch_size, "batch_size", owner, min_value=1)
        check_int(self.patience, "patience", owner, min_value=1)
        check_seed(self.seed, "seed", owner)
        check_int(self.input_size, "input_size", owner, min_value=0)
        if 0 < self.input_size < 32:
            raise ParameterError(f"The 'input_size' parameter of {owner} must be 0 (auto) or at least 32 pixels. Got {self.input_size}.")
        check_choice(self.device, ("auto", "cpu", "cuda"), "device", owner)
        if self.device == "cuda":
            resolve_device("cuda")
        return self


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ParameterError("The 'device' parameter is 'cuda' but torch sees no CUDA GPU on this machine; use --device cpu or auto.")
    return device


def _small_cnn(in_ch: int, n_classes: int, hw: tuple):
    """LeNet-style CNN: two conv+pool stages, a 128-d fully connected embedding.

    It learns from a few hundred images in a few epochs on a CPU, where a
    global-average-pooled net needs many more steps.
    """
    import torch.nn as nn

    features = nn.Sequential(
        nn.Conv2d(in_ch, 32, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * (hw[0] // 4) * (hw[1] // 4), 128), nn.ReLU(inplace=True),
    )
    return features, nn.Linear(128, n_classes)


def _resnet18(in_ch: int, n_classes: int, hw: tuple):
    import torch.nn as nn
    from torchvision.models import resnet18

    net = resnet18(weights=None, num_classes=n_classes)
    # Small images: a 3x3 stride-1 stem without max-pool (as for CIFAR-sized inputs).
    net.conv1 = nn.Conv2d(in_ch, 64, 3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    head = net.fc
    net.fc = nn.Identity()
    return net, head


def _build(arch: str, in_ch: int, hw: tuple, n_classes: int):
    import torch.nn as nn

    if arch == "auto":
        arch = "cnn" if max(hw) <= 64 else "resnet18"
    if min(hw) < 4:
        raise ParameterError(f"Images must be at least 4x4 pixels for the embedding network. Got {hw[1]}x{hw[0]}.")
    features, head = (_small_cnn if arch == "cnn" else _resnet18)(in_ch, n_classes, hw)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = features
            self.head = head

        def forward(self, x):
            return self.head(self.features(x))

    return Net(), arch


# Inference batch: small enough that a batch's activations stay under glibc's 32 MiB cap of
# its dynamic mmap threshold, so freed tensors are reused instead of mapped and page-faulted
# afresh on every batch: 24,000 28x28 images through the small CNN on one thread took
# 5.1 s at 1024 and 2.5 s at 128 here (benchmarks/results/scale.md).
INFER_BATCH = 128


class ImageEmbedder:
    """Train a network on labeled images, then embed images in batches.

    Attributes (after ``fit``): ``model_``, ``mean_``, ``std_``, ``val_accuracy_``,
    ``epochs_run_``, ``arch_``, ``device_``.
    """

    def __init__(self, config: EmbedConfig | None = None):
        self.config = config or EmbedConfig()

    def _to_tensor(self, x):
        import torch

        t = torch.as_tensor(np.asarray(x), dtype=torch.float32).permute(0, 3, 1, 2) / 255.0
        return (t - self.mean_) / self.std_

    def fit(self, x, y, x_val, y_val, n_classes: int, progress: bool = True):
        import torch
        import torch.nn.functional as F
        from tqdm.auto import tqdm

        cfg = self.config.validate()
        self.device_ = resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)
        x = np.asarray(x)
        xf = x.astype(np.float32) / 255.0
        self.mean_ = torch.as_tensor(xf.mean(axis=(0, 1, 2)), dtype=torch.float32).view(1, -1, 1, 1)
        self.std_ = torch.as_tensor(xf.std(axis=(0, 1, 2)) + 1e-6, dtype=torch.float32).view(1, -1, 1, 1)
        model, self.arch_ = _build(cfg.arch, x.shape[3], x.shape[1:3], n_classes)
        model = model.to(self.device_)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        xt = self._to_tensor(x)
        yt = torch.as_tensor(np.asarray(y), dtype=torch.long)
        gen = torch.Generator().manual_seed(cfg.seed)
        best = (-1.0, None)
        stale = 0
        # No ETA: early stopping usually ends training before cfg.epochs.
        bar = tqdm(range(cfg.epochs), desc=f"train {self.arch_} (early stopping, at most)", unit="epoch", file=sys.stderr,
                   disable=not progress, leave=False, bar_format="{desc} {total} epochs: epoch {n_fmt} [{elapsed}{postfix}]")
        for epoch in bar:  # noqa: B007 (the last epoch is read after the loop)
            model.train()
            perm = torch.randperm(xt.shape[0], generator=gen)
            for s in range(0, xt.shape[0], cfg.batch_size):
                idx = perm[s : s + cfg.batch_size]
                if idx.shape[0] < 2 and xt.shape[0] > 1:  # ResNet's BatchNorm needs two samples
                    continue
                opt.zero_grad()
                loss = F.cross_entropy(model(xt[idx].to(self.device_)), yt[idx].to(self.device_))
                loss.backward()
                opt.step()
            self.model_ = model
            acc = float((self.predict_proba(x_val).argmax(1) == np.asarray(y_val)).mean())
            bar.set_postfix(val_acc=f"{acc:.3f}")
            if acc > best[0]:
                best = (acc, {k: v.detach().clone() for k, v in model.state_dict().items()})
                stale = 0
            else:
                stale += 1
                if stale >= cfg.patience:
                    break
        bar.close()
        model.load_state_dict(best[1])
        model.eval()
        self.model_ = model
        self.val_accuracy_ = best[0]
        self.epochs_run_ = epoch + 1
        return self

    def transform(self, x, batch_size: int = INFER_BATCH):
        """Embeddings (float32, (n, d)) and class probabilities (float32, (n, C))."""
        import torch

        embs, probs = [], []
        self.model_.eval()
        with torch.no_grad():
            for s in range(0, len(x), batch_size):
                t = self._to_tensor(x[s : s + batch_size]).to(self.device_)
                h = self.model_.features(t)
                p = torch.softmax(self.model_.head(h), dim=1)
                embs.append(h.float().cpu().numpy())
                probs.append(p.float().cpu().numpy())
        return np.concatenate(embs), np.concatenate(probs)

    def predict_proba(self, x):
        return self.transform(x)[1]


class FeatureEmbedder:
    """Identity embedding plus a logistic-regression head for the probabilities."""

    def __init__(self, config: EmbedConfig | None = None):
        self.config = config or EmbedConfig()

    def fit(self, x, y, x_val, y_val, n_classes: int, progress: bool = True):
        from sklearn.linear_model import LogisticRegression

        x = np.asarray(x, dtype=np.float64)
        self.mean_ = x.mean(axis=0)
        self.scale_ = x.std(axis=0) + 1e-12
        self.n_classes_ = n_classes
        y = np.asarray(y)
        self.classes_present_ = np.unique(y)
        self.head_ = LogisticRegression(max_iter=1000, random_state=self.config.seed)
        if self.classes_present_.shape[0] > 1:
            self.head_.fit((x - self.mean_) / self.scale_, y)
        self.val_accuracy_ = float((self.predict_proba(x_val).argmax(1) == np.asarray(y_val)).mean())
        self.arch_ = "features+logreg"
        return self

    def transform(self, x, batch_size: int = SCORE_BLOCK_ROWS):
        x = np.asarray(x)
        return x.astype(np.float32, copy=False), self.predict_proba(x)

    def predict_proba(self, x):
        x = np.asarray(x, dtype=np.float64)
        out = np.zeros((x.shape[0], self.n_classes_), dtype=np.float32)
        if self.classes_present_.shape[0] == 1:
            out[:, self.classes_present_[0]] = 1.0
            return out
        out[:, self.classes_present_] = self.head_.predict_proba((x - self.mean_) / self.scale_)
        return out


def make_embedder(kind: str, config: EmbedConfig | None = None, *, feature_cache=None):
    """The embedder of a ``kind`` store: a pretrained backbone when ``config.arch`` names
    one (image stores only; ``feature_cache`` holds its backbone features), else a network
    trained from scratch for images, or the identity + logistic head for features."""
    config = config or EmbedConfig()
    if config.arch in PRETRAINED:
        if kind != "images":
            raise ParameterError(f"--embedder {config.arch} embeds image stores; a features store is its own embedding "
                                 f"(leave --embedder at auto).")
        from ads.pretrained import PretrainedEmbedder

        return PretrainedEmbedder(config, feature_cache=feature_cache)
    return ImageEmbedder(config) if kind == "images" else FeatureEmbedder(config)


class EmbeddingCache:
    """Directory of cached arrays keyed by a hash of the inputs' identities."""

    def __init__(self, root: Path | None):
        self.root = Path(root) if root is not None else None

    @staticmethod
    def key(*parts) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]

    def load(self, key: str) -> dict | None:
        if self.root is None:
            return None
        d = self.root / key
        if not (d / "done").exists():
            return None
        return {f.stem: np.load(f) for f in d.glob("*.npy")}

    def save(self, key: str, arrays: dict) -> None:
        if self.root is None:
            return
        with atomic_dir(self.root / key) as tmp:
            for name, a in arrays.items():
                np.save(tmp / f"{name}.npy", a)
            (tmp / "done").write_text("ok")


def embed_config_key(cfg: EmbedConfig) -> dict:
    import torch

    return {**asdict(cfg), "torch": torch.__version__, "v": 2}


def default_cache_root() -> Path:
    from ads.datasets import cache_dir

    return cache_dir() / "embeddings"


@dataclass
class Embeddings:
    """Embeddings of the labeled, validation and (optionally) pool points.

    ``emb`` (n, d) float32, ``emb_val`` (n_val, d), ``emb_pool`` (N, d) and ``proba_pool``
    (N, C) float32 or None, the network's validation accuracy and architecture, and
    whether they came from the cache.
    """

    emb: np.ndarray
    emb_val: np.ndarray
    emb_pool: np.ndarray | None
    proba_pool: np.ndarray | None
    val_accuracy: float
    arch: str
    cached: bool
    proba_val: np.ndarray | None = None  # (n_val, C): calibration of threshold pre-selection
    pool_source: object = None  # the PoolEmbeddings / MemoryEmbeddings behind emb_pool (its work blocks)

    def pool_blocks(self):
        """The pool's embeddings as a block source for :mod:`ads.stages`."""
        from ads.stream import as_source

        return self.pool_source if self.pool_source is not None else as_source(self.emb_pool, self.proba_pool)


def fit_embedder(kind: str, data, n_classes: int, config: EmbedConfig | None = None, *, progress: bool = True,
                 feature_cache=None):
    """Train the embedder of a ``kind`` store on ``data`` (a :class:`ads.task.LabeledData`);
    ``feature_cache``: where a pretrained backbone caches its features (None: nowhere)."""
    config = (config or EmbedConfig()).validate()
    model = make_embedder(kind, config, feature_cache=feature_cache).fit(data.x, data.y, data.x_val, data.y_val, n_classes, progress=progress)
    logger.info("embedding model %s: validation accuracy %.4f", model.arch_, model.val_accuracy_)
    return model


def transform_store(model, store, *, progress: bool = True, desc: str = "embed pool"):
    """Embeddings and probabilities of every row of ``store``, read chunk by chunk."""
    from tqdm.auto import tqdm

    parts_e, parts_p = [], []
    with tqdm(total=store.n, desc=desc, unit="pt", file=sys.stderr, disable=not progress, leave=False) as bar:
        for _s, block in store.blocks():
            e, p = model.transform(block)
            parts_e.append(e)
            parts_p.append(p)
            bar.update(block.shape[0])
    return np.concatenate(parts_e), np.concatenate(parts_p)


def embed_pool(model, pool, d: int, c: int, *, path=None, runner=None, progress: bool = True, meta: dict | None = None):
    """Embed every row of ``pool`` with ``model`` into a :class:`ads.stream.PoolEmbeddings`
    at ``path`` (None: a temporary directory), block by block (:func:`ads.stream.pool_blocks`)
    through ``runner`` (in-process by default). A features store whose ``x`` is float32
    is its own embedding: only the probabilities are written."""
    from ads.errors import OutputError
    from ads.stages import InProcess
    from ads.stream import MEMORY_BYTES, MemoryEmbeddings, PoolEmbeddings, pool_blocks

    runner = runner or InProcess()
    blocks = pool_blocks(pool)
    if path is None and isinstance(runner, InProcess) and pool.n * (d + c) * 4 <= MEMORY_BYTES:
        out = MemoryEmbeddings.empty(pool.n, d, c, blocks)
        runner.embed(model, pool, out, progress=progress)
        return out
    emb_from = pool.path if (pool.kind == "features" and pool.x.dtype == np.float32) else None
    meta = {"store": str(Path(pool.path).resolve()), "fingerprint": pool.fingerprint(), "arch": model.arch_, **(meta or {})}
    where = f"pool embeddings {str(path)!r}" if path is not None else "pool embeddings (temporary directory)"
    out = None
    try:
        if path is None:
            out = PoolEmbeddings.temporary(pool.n, d, c, blocks, meta, emb_from=emb_from)
        else:
            out = PoolEmbeddings.create(path, pool.n, d, c, blocks, meta, emb_from=emb_from)
        runner.embed(model, pool, out, progress=progress)
        return out.commit()
    except OSError as e:
        if out is not None:
            out.discard()
        raise OutputError(f"cannot write {where}: {e.strerror or e}.") from None
    except BaseException:
        if out is not None:
            out.discard()
        raise


def embed_stores(task, pool=None, config: EmbedConfig | None = None, *, cache: EmbeddingCache | None = None,
                 progress: bool = True, runner=None) -> Embeddings:
    """Embeddings of a task's labeled and validation data and of ``pool`` (a store or
    None), from ``cache`` when it holds them, else by training the embedder.

    ``task`` is an :class:`ads.task.Task`. The pool's embeddings and probabilities live on
    disk (:class:`ads.stream.PoolEmbeddings`: in the cache, or in a temporary directory
    without one) and are read lazily: ``em.emb_pool[rows]``, ``np.asarray(em.emb_pool)``.
    ``runner`` embeds the pool's blocks (in-process by default, or on Dask).
    """
    from ads.stream import PoolEmbeddings

    config = (config or EmbedConfig()).validate()
    cache = cache or EmbeddingCache(None)
    # Two entries: the labeled part (shared by `ads value` and `ads select` on the same
    # labeled + validation stores and network), and the pool's part.
    key_lab = EmbeddingCache.key(embed_config_key(config), task.n_classes, list(task.key_parts))
    key_pool = EmbeddingCache.key(key_lab, pool.fingerprint(), "pool-zarr-1") if pool is not None else None
    pool_path = cache.root / key_pool if (cache.root is not None and key_pool is not None) else None
    lab = cache.load(key_lab)
    hit = PoolEmbeddings.open(pool_path) if (lab is not None and pool_path is not None) else None
    if lab is not None and (pool is None or hit is not None):
        logger.info("embeddings: reusing cache %s", cache.root / (key_pool or key_lab))
        return Embeddings(lab["emb"], lab["emb_val"], None if hit is None else hit.emb, None if hit is None else hit.proba,
                          float(lab["val_accuracy"]), str(lab["arch"]), True, lab["proba_val"], hit)
    model = fit_embedder(task.kind, task.data, task.n_classes, config, progress=progress,
                         feature_cache=None if cache.root is None else cache.root / "backbone")
    emb, _ = model.transform(task.data.x)
    emb_val, proba_val = model.transform(task.data.x_val)
    cache.save(key_lab, {"emb": emb, "emb_val": emb_val, "proba_val": proba_val,
                         "val_accuracy": np.array(model.val_accuracy_), "arch": np.array(model.arch_)})
    emb_pool = proba_pool = None
    if pool is not None:
        pe = embed_pool(model, pool, emb.shape[1], task.n_classes, path=pool_path, runner=runner, progress=progress,
                        meta={"key": key_pool})
        emb_pool, proba_pool = pe.emb, pe.proba
    return Embeddings(emb, emb_val, emb_pool, proba_pool, float(model.val_accuracy_), model.arch_, False, proba_val,
                      None if pool is None else pe)
