"""Embedding networks on small real images (optdigits 8x8)."""

from __future__ import annotations

import numpy as np
import pytest

from ads.embed import EmbedConfig, EmbeddingCache, FeatureEmbedder, ImageEmbedder
from ads.errors import ParameterError


def _split(digits):
    images, feats, y = digits
    x = images[..., None]
    return x[:300], y[:300], x[300:400], y[300:400]


def test_cnn_is_deterministic_and_learns(digits):
    x, y, xv, yv = _split(digits)
    a = ImageEmbedder(EmbedConfig(epochs=4, seed=1)).fit(x, y, xv, yv, 10, progress=False)
    b = ImageEmbedder(EmbedConfig(epochs=4, seed=1)).fit(x, y, xv, yv, 10, progress=False)
    ea, pa = a.transform(xv)
    eb, pb = b.transform(xv)
    np.testing.assert_array_equal(ea, eb)
    assert ea.shape == (100, 128) and ea.dtype == np.float32
    np.testing.assert_allclose(pa.sum(1), 1, atol=1e-5)
    assert a.val_accuracy_ > 0.5  # chance is 0.1
    assert a.val_accuracy_ == pytest.approx(float((pa.argmax(1) == yv).mean()))


def test_resnet18_from_torchvision_runs(digits):
    x, y, xv, yv = _split(digits)
    m = ImageEmbedder(EmbedConfig(arch="resnet18", epochs=1, batch_size=64)).fit(x[:100], y[:100], xv[:20], yv[:20], 10, progress=False)
    e, p = m.transform(xv[:20])
    assert e.shape == (20, 512) and p.shape == (20, 10)


def test_feature_embedder_identity_and_one_class(digits):
    _, feats, y = digits
    m = FeatureEmbedder().fit(feats[:200], y[:200], feats[200:300], y[200:300], 10)
    e, p = m.transform(feats[300:310])
    np.testing.assert_array_equal(e, feats[300:310])
    assert m.val_accuracy_ > 0.8
    one = FeatureEmbedder().fit(feats[:20], np.full(20, 3), feats[:5], np.full(5, 3), 10)
    assert (one.predict_proba(feats[:4])[:, 3] == 1).all()


def test_bad_config():
    with pytest.raises(ParameterError, match=r"'arch' parameter of the embedding network must be one of"):
        EmbedConfig(arch="vgg").validate()
    with pytest.raises(ParameterError, match=r"'epochs' parameter of the embedding network must be an int >= 1. Got 0"):
        EmbedConfig(epochs=0).validate()


def test_cache_round_trip(tmp_path):
    c = EmbeddingCache(tmp_path)
    assert c.load("k") is None
    c.save("k", {"a": np.arange(3), "b": np.ones((2, 2))})
    got = c.load("k")
    np.testing.assert_array_equal(got["a"], np.arange(3))
    assert EmbeddingCache.key({"x": 1}) != EmbeddingCache.key({"x": 2})
