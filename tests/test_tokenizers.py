"""VQ tokenizers: the VQ-VAE's quantiser maths, training, and the taming VQGAN layout."""

import pytest
import torch
from torch import nn

from maskvid_edu.data.synthetic import SyntheticVideoDataset
from maskvid_edu.data.transforms import denormalize, normalize
from maskvid_edu.tokenizers import (
    TAMING_PRESETS,
    VQVAE,
    EMAVectorQuantizer,
    TamingVQGANEncoder,
    VQTokenizer,
    train_vqvae,
    vqvae_config,
)


pytestmark = pytest.mark.usefixtures("one_thread")


def _demo(**overrides) -> VQVAE:
    torch.manual_seed(0)
    return VQVAE(vqvae_config("vqvae_demo", **overrides))


def _synthetic_videos(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    ds = SyntheticVideoDataset(num_frames=2, size=size, num_samples=n, seed=seed)
    return torch.stack([ds[i]["video"] for i in range(n)])  # (n, 3, 2, size, size), normalised


# ----------------------------------------------------------------------------- interface


def test_encode_is_deterministic_and_leaves_codebook_alone():
    model = _demo()
    frames = torch.randn(4, 3, 32, 48)
    codes = model.encode(frames)
    assert isinstance(model, VQTokenizer)
    assert codes.shape == (4, 4, 6) and codes.dtype == torch.int64
    assert 0 <= int(codes.min()) and int(codes.max()) < model.codebook_size == 128
    assert model.downsample == 8
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()  # encode never updates the EMA codebook, even in training mode
    assert torch.equal(model.encode(frames), codes)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert model.decode(codes).shape == (4, 3, 32, 48)


def test_input_errors():
    model = _demo()
    with pytest.raises(ValueError, match="3 channels"):
        model.encode(torch.randn(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model.encode(torch.randn(2, 3, 2, 32, 32))
    with pytest.raises(ValueError, match="multiples of downsample=8"):
        model.encode(torch.randn(2, 3, 30, 32))
    with pytest.raises(ValueError, match="must be float"):
        model.encode(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 128\)"):
        model.decode(torch.full((1, 2, 2), 128))
    with pytest.raises(ValueError, match="unknown VQ-VAE preset"):
        vqvae_config("vqvae_huge")
    with pytest.raises(ValueError, match="unknown VQVAEConfig fields"):
        vqvae_config("vqvae_demo", channels=3)


# ----------------------------------------------------------------------------- quantiser maths


def test_straight_through_gradient_reaches_the_encoder():
    q = EMAVectorQuantizer(16, 4).eval()
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    z_q, codes, _, _ = q(z)
    # forward value is the chosen code vector …
    torch.testing.assert_close(z_q, q.codebook[codes].permute(0, 3, 1, 2), rtol=0, atol=1e-6)
    # … and the gradient is handed to z unchanged
    g = torch.randn_like(z_q)
    (z_q * g).sum().backward()
    torch.testing.assert_close(z.grad, g, rtol=0, atol=0)
    # in the full model, the reconstruction loss alone trains the encoder's first layer
    model = _demo()
    out = model(torch.randn(2, 3, 32, 32))
    out.recon_loss.backward()
    grad = model.encoder[0].weight.grad
    assert grad is not None and grad.abs().sum() > 0


@pytest.mark.parametrize("training", [False, True])
def test_commitment_loss_matches_formula(training):
    q = EMAVectorQuantizer(16, 4, beta=0.25, restart_after=0).train(training)
    z = torch.randn(3, 4, 5, 5)
    codebook = q.codebook.clone()  # the code vectors at assignment time
    _, codes, commitment, _ = q(z)
    e = codebook[codes].permute(0, 3, 1, 2)  # (B, D, h, w)
    expected = 0.25 * ((z - e) ** 2).mean()
    torch.testing.assert_close(commitment, expected, rtol=1e-6, atol=0)
    # codes are the nearest codebook rows
    dist = ((z.permute(0, 2, 3, 1)[..., None, :] - codebook) ** 2).sum(-1)  # (B, h, w, K)
    assert torch.equal(codes, dist.argmin(-1))


def test_ema_update_matches_formula():
    K, D, decay, eps = 6, 3, 0.9, 1e-5
    q = EMAVectorQuantizer(K, D, decay=decay, eps=eps, restart_after=0).train()
    cs0, es0 = q.cluster_size.clone(), q.embed_sum.clone()
    z = torch.randn(2, D, 4, 4)
    _, codes, _, _ = q(z)
    flat, idx = z.permute(0, 2, 3, 1).reshape(-1, D), codes.flatten()
    n_k = torch.bincount(idx, minlength=K).float()
    sums = torch.stack([flat[idx == k].sum(0) for k in range(K)])
    cs = decay * cs0 + (1 - decay) * n_k
    es = decay * es0 + (1 - decay) * sums
    smoothed = (cs + eps) / (cs.sum() + K * eps) * cs.sum()
    torch.testing.assert_close(q.cluster_size, cs)
    torch.testing.assert_close(q.codebook, es / smoothed[:, None])
    # eval mode: no update
    before = q.codebook.clone()
    q.eval()(z)
    assert torch.equal(q.codebook, before)


def test_dead_code_restart_revives_unused_codes():
    torch.manual_seed(0)
    K, D = 8, 2
    z = 0.1 * torch.randn(1, D, 4, 4)  # 16 encoder outputs near the origin

    def trained_quantizer(restart_after):
        q = EMAVectorQuantizer(K, D, restart_after=restart_after).train()
        far = torch.full((K, D), 100.0)
        far[0] = 0.0  # only code 0 is anywhere near the data
        q.codebook.copy_(far)
        q.embed_sum.copy_(far)
        q.steps_unused.zero_()  # as if all codes had just been used
        return q

    q = trained_quantizer(restart_after=3)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):  # codes 1..7 go unused for three steps …
        _, codes, _, _ = q(z, g)
        assert codes.unique().tolist() == [0]
    assert q.steps_unused[1:].tolist() == [3] * (K - 1)
    _, codes, _, _ = q(z, g)  # … so the fourth step restarts them on encoder outputs
    assert codes.unique().numel() == K, "every revived code is chosen by the output it was placed on"
    assert q.codebook[1:].abs().max() < 1.0
    assert q.steps_unused.max() == 0

    never = trained_quantizer(restart_after=0)  # restart switched off: they stay dead
    for _ in range(5):
        _, codes, _, _ = never(z, g)
    assert codes.unique().tolist() == [0]


def test_fresh_codebook_is_initialised_from_the_first_batch():
    q = EMAVectorQuantizer(8, 2).train()
    z = torch.randn(1, 2, 4, 4) + 50.0  # far from the random-normal initial codebook
    _, codes, _, _ = q(z, torch.Generator().manual_seed(0))
    assert codes.unique().numel() == 8
    assert ((q.codebook - 50.0).abs() < 5).all()


# ----------------------------------------------------------------------------- training


def test_vqvae_trains_and_reconstructs_synthetic_frames():
    """Round trip encode → decode after 250 steps on 64 synthetic 32 px frames.

    Measured (one thread, seeds as here): pixel MSE 0.0257 before training → 0.0112 after, for
    a frame variance of 0.0209 (the error of predicting one mean value). Thresholds leave room.
    """
    videos = _synthetic_videos(32)  # (32, 3, 2, 32, 32): 64 frames
    batches = [videos[i : i + 8] for i in range(0, 32, 8)]  # video batches; every frame is used
    frames = videos.transpose(1, 2).reshape(-1, 3, 32, 32)
    model = _demo()

    def pixel_mse():
        recon = model.decode(model.encode(frames))
        return ((denormalize(recon, 1) - denormalize(frames, 1)) ** 2).mean().item()

    before = pixel_mse()
    history = train_vqvae(model, batches, steps=250, lr=2e-3, device="cpu", progress=False)
    after = pixel_mse()
    variance = denormalize(frames, 1).var().item()
    assert not model.training
    assert set(history) == {"loss", "recon", "commitment", "perplexity", "codes_used"}
    assert all(len(v) == 250 for v in history.values())
    assert after < 0.8 * variance and after < 0.65 * before, (before, after, variance)
    assert sum(history["recon"][-20:]) < 0.75 * sum(history["recon"][:20])
    print(f"pixel MSE {before:.4f} -> {after:.4f}, frame variance {variance:.4f}, codes used {history['codes_used'][-1]:.0f}")
    assert history["codes_used"][-1] >= 32, "dead-code restart keeps the codebook in use"


def test_train_vqvae_accepts_dataset_dicts_and_reports_exhaustion():
    ds = SyntheticVideoDataset(num_frames=2, size=32, num_samples=4)
    loader = torch.utils.data.DataLoader(ds, batch_size=2)  # dicts with "video" (B, 3, 2, 32, 32)
    history = train_vqvae(_demo(), loader, steps=3, device="cpu", progress=False)  # 2 batches, cycled
    assert len(history["loss"]) == 3
    one_shot = iter([torch.randn(4, 3, 32, 32)])
    with pytest.raises(ValueError, match="ran out of batches after 1 steps"):
        train_vqvae(_demo(), one_shot, steps=2, device="cpu", progress=False)
    with pytest.raises(ValueError, match="each batch must be"):
        train_vqvae(_demo(), [torch.randn(32, 32)], steps=1, device="cpu", progress=False)


# ----------------------------------------------------------------------------- taming VQGAN layout

try:  # taming-transformers-rom1504 (installed with --no-deps: only these two modules are imported)
    import taming.modules.diffusionmodules.model as taming_model
    import taming.modules.vqvae.quantize as taming_quantize
except ImportError:  # pragma: no cover - depends on the environment
    taming_model = taming_quantize = None
needs_taming = pytest.mark.skipif(
    taming_model is None, reason="needs taming-transformers: pip install --no-deps taming-transformers-rom1504==0.0.6"
)


class _TamingVQModel(nn.Module):
    """The tensors of taming's ``VQModel`` (its Lightning wrapper is not needed), same names."""

    def __init__(self, ddconfig, embed_dim, n_embed):
        super().__init__()
        self.encoder = taming_model.Encoder(**ddconfig)
        self.decoder = taming_model.Decoder(**ddconfig)
        self.quantize = taming_quantize.VectorQuantizer2(n_embed, embed_dim, beta=0.25)
        self.quant_conv = nn.Conv2d(ddconfig["z_channels"], embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, ddconfig["z_channels"], 1)

    def prequant_and_codes(self, pixels):
        h = self.quant_conv(self.encoder(pixels * 2 - 1))  # taming sees [-1, 1]
        _, _, (_, _, idx) = self.quantize(h)
        return h, idx.view(h.shape[0], h.shape[2], h.shape[3])


SMALL_DDCONFIG = dict(double_z=False, z_channels=16, resolution=32, in_channels=3, out_ch=3, ch=32,
                      ch_mult=(1, 2, 2), num_res_blocks=2, attn_resolutions=(32, 8), dropout=0.0)


def _reference_and_ours(ddconfig, embed_dim, n_embed, pixels):
    torch.manual_seed(0)
    ref = _TamingVQModel(ddconfig, embed_dim, n_embed).eval()
    with torch.no_grad():  # a codebook near the actual features, so codes are contested
        h = ref.quant_conv(ref.encoder(pixels * 2 - 1)).permute(0, 2, 3, 1).reshape(-1, embed_dim)
        pick = torch.randint(h.shape[0], (n_embed,))
        ref.quantize.embedding.weight.copy_(h[pick] + 0.05 * h.std() * torch.randn(n_embed, embed_dim))
    state = ref.state_dict()
    state["loss.discriminator.main.0.weight"] = torch.zeros(1)  # a VQGAN checkpoint also holds its loss
    ours = TamingVQGANEncoder(ddconfig, embed_dim, n_embed).eval()
    ignored = ours.load_taming({"state_dict": state, "global_step": 1})
    return ref, ours, ignored, state


def _check_same(ref, ours, pixels):
    with torch.no_grad():
        h_ref, codes_ref = ref.prequant_and_codes(pixels)
        h_ours = ours.encode_prequant(normalize(pixels, channel_dim=1))
        codes_ours = ours.encode(normalize(pixels, channel_dim=1))
    torch.testing.assert_close(h_ours, h_ref, rtol=1e-4, atol=1e-5)
    assert torch.equal(codes_ours, codes_ref)
    return codes_ours


@needs_taming
def test_taming_layout_small_config():
    pixels = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    ref, ours, ignored, state = _reference_and_ours(SMALL_DDCONFIG, 8, 64, pixels)
    assert ignored == sorted(k for k in state if k.startswith(("decoder.", "post_quant_conv.", "loss.")))
    assert set(ours.state_dict()) == {k for k in state if k.startswith(("encoder.", "quant_conv.", "quantize."))}
    assert ours.downsample == 4 and ours.codebook_size == 64
    codes = _check_same(ref, ours, pixels)
    assert codes.shape == (2, 8, 8) and codes.unique().numel() > 8
    # attention is placed by the configured resolution, so other input sizes work alike
    _check_same(ref, ours, torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(1)))


@pytest.mark.slow
@needs_taming
def test_taming_layout_imagenet_f16_1024_preset():
    preset = TAMING_PRESETS["vqgan_imagenet_f16_1024"]
    pixels = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    ref, ours, _, _ = _reference_and_ours(dict(preset["ddconfig"]), preset["embed_dim"], preset["n_embed"], pixels)
    assert sum(p.numel() for p in ours.parameters()) == sum(
        p.numel() for n, p in ref.named_parameters() if n.startswith(("encoder.", "quant_conv.", "quantize."))
    )
    assert ours.downsample == 16
    assert _check_same(ref, ours, pixels).shape == (1, 4, 4)


@needs_taming
def test_taming_load_errors(tmp_path):
    pixels = torch.rand(1, 3, 32, 32)
    _, ours, _, state = _reference_and_ours(SMALL_DDCONFIG, 8, 64, pixels)
    path = tmp_path / "vqgan.ckpt"
    torch.save({"state_dict": state}, path)
    assert ours.load_taming(path) == sorted(k for k in state if k.startswith(("decoder.", "post_quant_conv.", "loss.")))
    with pytest.raises(FileNotFoundError, match="taming checkpoint not found"):
        ours.load_taming(tmp_path / "missing.ckpt")
    partial = {k: v for k, v in state.items() if k != "quant_conv.weight"}
    with pytest.raises(ValueError, match=r"missing keys \['quant_conv.weight'\]"):
        ours.load_taming(partial)
    extra = dict(state, **{"encoder.down.0.attn.5.q.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="unexpected keys"):
        ours.load_taming(extra)
    bigger = TamingVQGANEncoder(SMALL_DDCONFIG, 8, 128)
    with pytest.raises(ValueError, match=r"quantize.embedding.weight.*\(64, 8\), expected \(128, 8\)"):
        bigger.load_taming(state)
    with pytest.raises(ValueError, match="double_z"):
        TamingVQGANEncoder(dict(SMALL_DDCONFIG, double_z=True), 8, 64)
    with pytest.raises(ValueError, match=r"missing keys \['ch'\]"):
        TamingVQGANEncoder({k: v for k, v in SMALL_DDCONFIG.items() if k != "ch"}, 8, 64)
    with pytest.raises(ValueError, match="multiple of 32"):
        TamingVQGANEncoder(dict(SMALL_DDCONFIG, ch=48), 8, 64)
    with pytest.raises(ValueError, match="3 channels"):
        ours.encode(torch.randn(1, 4, 32, 32))
    with pytest.raises(NotImplementedError, match="only encode"):
        ours.decode(torch.zeros(1, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="unknown taming preset"):
        TamingVQGANEncoder.from_preset("vqgan_f8")
