"""Published weights: the registry, fetching into the cache (no network), from_pretrained, any grid."""

import hashlib
import io
import json
import logging
import urllib.error

import pytest
import torch

from maskvid_edu import weights
from maskvid_edu.checkpoints import load_videomae, to_official
from maskvid_edu.cli import main
from maskvid_edu.models import list_models
from maskvid_edu.models.videomae import VideoMAE, VideoMAEConfig
from maskvid_edu.models.vit import VisionTransformer, ViTConfig, resize_position_embedding
from maskvid_edu.pretrained import from_pretrained


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MASKVID_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def entry(url, size=None, sha256=None, name="toy"):
    return weights.Weights(name, "videomae_vit_s", "finetune", "official",
                           (weights.WeightFile("toy.pth", url, size, sha256),), "MIT")


def test_registry_sanity():
    names = [w.name for w in weights.list_weights()]
    assert len(names) == len(set(names)) >= 12
    for w in weights.list_weights():
        assert w.model in list_models(), w.name
        assert w.kind in ("pretrain", "finetune") and w.layout in ("transformers", "official")
        assert all(f.sha256 is None or len(f.sha256) == 64 for f in w.files)
    table = weights.format_table()
    assert "videomae-base" in table and "not published" in table


def test_fetch_file_url_checksum(tmp_path, cache):
    src = tmp_path / "w.bin"
    src.write_bytes(b"weights" * 100)
    good = hashlib.sha256(src.read_bytes()).hexdigest()
    got = weights.fetch(entry(src.as_uri(), size=700, sha256=good))
    assert got.read_bytes() == src.read_bytes() and weights.is_cached(entry(src.as_uri(), 700, good))
    with pytest.raises(weights.FetchError, match=f"expected {'0' * 64}, got {good}"):
        weights.fetch(entry(src.as_uri(), sha256="0" * 64, name="bad"))
    assert not any((cache / "bad").iterdir())  # nothing left behind


class Response(io.BytesIO):
    def __init__(self, data, status=200, total=None):
        super().__init__(data)
        self.status = status
        self.headers = {"Content-Length": str(total if total is not None else len(data))}


def test_truncated_download_resumes(monkeypatch):
    data = bytes(range(256)) * 8
    calls = []

    def opener(request, timeout):
        calls.append(request.get_header("Range"))
        if len(calls) == 1:
            return Response(data[:1000], total=len(data))  # the connection drops after 1000 bytes
        return Response(data[1000:], status=206)

    monkeypatch.setattr(weights, "urlopen", opener)
    e = entry("https://example.org/toy.pth")
    with pytest.raises(weights.FetchError, match="stopped at 1000 of 2048 bytes; fetch again to resume"):
        weights.fetch(e)
    assert weights.fetch(e).read_bytes() == data and calls == [None, "bytes=1000-"]


def test_no_network_and_missing_entry(monkeypatch, capsys):
    def offline(request, timeout):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(weights, "urlopen", offline)
    monkeypatch.setattr(weights, "_hub_client", lambda: None)
    with pytest.raises(weights.FetchError, match=r"cannot download https://huggingface.co/MCG-NJU/videomae-base/"
                       r"resolve/main/config.json .*put it at .*videomae-base/config.json"):
        weights.fetch("videomae-base")
    with pytest.raises(weights.FetchError, match="run `maskvid-edu weights fetch videomae-base`"):
        weights.path("videomae-base")
    with pytest.raises(SystemExit) as exit_:
        main(["weights", "fetch", "videomae-base"])
    assert exit_.value.code == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1
    assert main(["weights", "list"]) == 0


def small(**kw):
    base = dict(img_size=32, num_frames=4, tubelet=2, patch=8, dim=48, depth=2, heads=4,
                decoder_dim=24, decoder_depth=2, decoder_heads=2, mask_ratio=0.75)
    return VideoMAEConfig(**{**base, **kw})


@pytest.mark.parametrize("qkv_bias", [True, False])
def test_transformers_folder_matches_the_converter(tmp_path, qkv_bias):
    transformers = pytest.importorskip("transformers")
    from maskvid_edu.measure.bench import transformers_config

    config = small(qkv_bias=qkv_bias)
    torch.manual_seed(0)
    hf = transformers.VideoMAEForPreTraining(transformers_config(config))
    hf.save_pretrained(tmp_path / "hf")
    ours = from_pretrained(tmp_path / "hf").eval()
    reference = VideoMAE(config).eval()
    load_videomae(reference, hf.state_dict())
    video = torch.randn(2, 3, 4, 32, 32)
    mask = reference.make_mask(video, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(ours(video, mask).pred, reference(video, mask).pred, atol=1e-6)


def test_a_transformers4_folder_loads_strictly(tmp_path):
    """A folder as transformers 4 writes it: ``q_bias`` / ``v_bias`` parameters and ``qkv_bias`` in
    config.json (transformers 5.18+ writes ``qv_bias``), here with the biases switched off."""
    transformers = pytest.importorskip("transformers")
    from safetensors.torch import load_file, save_file

    from maskvid_edu.measure.bench import transformers_config

    for qv_bias in (True, False):
        config = small(qkv_bias=qv_bias)
        torch.manual_seed(0)
        hf = transformers.VideoMAEForPreTraining(transformers_config(config))
        folder = tmp_path / f"hf_{qv_bias}"
        hf.save_pretrained(folder)
        state = {k.replace(".attention.attention.query.bias", ".attention.attention.q_bias")
                  .replace(".attention.attention.value.bias", ".attention.attention.v_bias"): v
                 for k, v in load_file(str(folder / "model.safetensors")).items()}
        assert sum(k.endswith(("attention.q_bias", "attention.v_bias")) for k in state) == (8 if qv_bias else 0)
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
        hf_config = json.loads((folder / "config.json").read_text())
        hf_config.pop("qv_bias", None)
        hf_config["qkv_bias"] = qv_bias
        (folder / "config.json").write_text(json.dumps(hf_config))
        ours = from_pretrained(folder).eval()  # strict: every weight placed, none left over
        assert (ours.encoder.blocks[0].attn.q_bias is not None) == qv_bias
        video = torch.randn(2, 3, 4, 32, 32)
        mask = ours.make_mask(video, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            ref = hf.eval()(video.transpose(1, 2), bool_masked_pos=mask).logits
            assert (ours(video, mask).pred - ref).abs().max() <= 1e-5


def test_transformers_classification_folder(tmp_path):
    transformers = pytest.importorskip("transformers")
    from maskvid_edu.measure.bench import transformers_config

    hf_config = transformers_config(small())
    hf_config.use_mean_pooling, hf_config.num_labels = True, 3
    torch.manual_seed(0)
    hf = transformers.VideoMAEForVideoClassification(hf_config)
    hf.save_pretrained(tmp_path / "hf")
    ours = from_pretrained(tmp_path / "hf", verbose=True).eval()
    reference = VisionTransformer(ViTConfig(img_size=32, num_frames=4, tubelet=2, patch=8, dim=48, depth=2, heads=4,
                                            use_mean_pooling=True, num_classes=3, ln_eps=hf_config.layer_norm_eps))
    load_videomae(reference.eval(), hf.state_dict())
    video = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        assert torch.equal(ours.classify(video), reference.classify(video))


def test_hub_files_go_through_the_hub_client(tmp_path, monkeypatch):
    calls = []

    def hf_hub_download(repo, filename, local_dir):
        calls.append((repo, filename))
        target = tmp_path / "hub" / filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("{}")
        return str(target)

    monkeypatch.setattr(weights, "_hub_client", lambda: hf_hub_download)
    folder = weights.fetch("videomae-base")
    assert calls == [("MCG-NJU/videomae-base", "config.json"), ("MCG-NJU/videomae-base", "pytorch_model.bin")]
    assert weights.path("videomae-base") == folder and (folder / "pytorch_model.bin").is_file()


def test_official_pth_loads_strictly(tmp_path):
    torch.manual_seed(0)
    pretrain = VideoMAE(small(img_size=224, num_frames=16, patch=16))
    torch.save({"model": to_official(pretrain)}, tmp_path / "pt.pth")
    loaded = from_pretrained(tmp_path / "pt.pth", img_size=224, num_frames=16)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), pretrain.state_dict().values()))
    encoder = VisionTransformer(ViTConfig(dim=48, depth=1, heads=4, use_mean_pooling=True, num_classes=5))
    torch.save(to_official(encoder), tmp_path / "ft.pth")
    assert from_pretrained(tmp_path / "ft.pth").config.num_classes == 5
    bad = to_official(encoder)
    bad["head.bias"][0] = float("nan")
    torch.save(bad, tmp_path / "nan.pth")
    with pytest.raises(ValueError, match="non-finite"):
        from_pretrained(tmp_path / "nan.pth")


ENC = dict(dim=32, depth=1, heads=2, use_mean_pooling=True, num_classes=3)


@pytest.mark.parametrize("frames, size", [(32, 224), (16, 160)])
def test_any_grid_fixed_is_recomputed(tmp_path, frames, size):
    torch.manual_seed(0)
    source = VisionTransformer(ViTConfig(**ENC))
    sd = to_official(source)
    sd["pos_embed"] = source.pos_embed.unsqueeze(0)  # stored, as some releases do
    torch.save(sd, tmp_path / "ft.pth")
    model = from_pretrained(tmp_path / "ft.pth", num_frames=frames, img_size=size, heads=2).eval()
    native = VisionTransformer(ViTConfig(**ENC, num_frames=frames, img_size=size)).eval()
    native.load_state_dict(source.state_dict())
    video = torch.randn(1, 3, frames, size, size)
    with torch.no_grad():
        out = model.classify(video)
        assert torch.isfinite(out).all() and torch.equal(out, native.classify(video))


@pytest.mark.parametrize("frames, size", [(32, 224), (16, 160)])
def test_any_grid_learned_is_interpolated(tmp_path, frames, size, caplog):
    torch.manual_seed(0)
    source = VisionTransformer(ViTConfig(**ENC, learned_pos=True))
    with torch.no_grad():
        source.pos_embed.add_(torch.randn_like(source.pos_embed))
    torch.save(to_official(source), tmp_path / "ft.pth")
    with caplog.at_level(logging.INFO, logger="maskvid_edu.checkpoints"):
        model = from_pretrained(tmp_path / "ft.pth", num_frames=frames, img_size=size, heads=2).eval()
    assert sum("interpolated" in r.message for r in caplog.records) == 1
    assert model.config.learned_pos and model.pos_embed.shape == (frames // 2 * (size // 16) ** 2, 32)
    expected = resize_position_embedding(source.pos_embed.detach(), (8, 14, 14), model.config.grid)
    assert torch.equal(model.pos_embed.detach(), expected)
    with torch.no_grad():
        assert torch.isfinite(model.classify(torch.randn(1, 3, frames, size, size))).all()


def test_resize_position_embedding_keeps_a_constant_and_the_identity():
    table = torch.randn(4 * 3 * 3, 8)
    assert torch.equal(resize_position_embedding(table, (4, 3, 3), (4, 3, 3)), table)
    const = torch.ones(2 * 2 * 2, 5)
    assert torch.allclose(resize_position_embedding(const, (2, 2, 2), (4, 3, 3)), torch.ones(36, 5), atol=1e-6)
