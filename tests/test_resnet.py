"""Sparse ResNets: torchvision parity, VideoMAC layout, visible-site BatchNorm, dissipation."""

import pytest
import torch
import torch.nn as nn
import torchvision

from maskvid_edu.models.registry import create, list_models
from maskvid_edu.models.resnet import (
    RESNET_SIZES,
    ResNetConfig,
    SparseResNet,
    build_resnet,
    convert_torchvision_state_dict,
)


def random_patch_mask(b, n, ratio, seed=0):
    g = torch.Generator().manual_seed(seed)
    k = int(round(ratio * n))
    mask = torch.zeros(b, n, dtype=torch.bool)
    for i in range(b):
        mask[i, torch.randperm(n, generator=g)[:k]] = True
    return mask


def torchvision_pair(seed=0):
    torch.manual_seed(seed)
    ref = torchvision.models.resnet50(weights=None)
    with torch.no_grad():  # non-trivial BatchNorm state so the mapping of every buffer matters
        for m in ref.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.normal_(1, 0.1)
                m.bias.normal_(0, 0.1)
    ours = build_resnet("resnet50_bn")
    ours.load_state_dict(convert_torchvision_state_dict(ref.state_dict()))  # strict
    body = nn.Sequential(*list(ref.children())[:-2])  # without avgpool + fc
    return ref, body, ours


def test_torchvision_weights_give_equal_features_eval():
    _, body, ours = torchvision_pair()
    body.eval()
    ours.eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        a, b = body(x), ours(x)
    assert a.shape == b.shape == (2, 2048, 2, 3)
    assert (a - b).abs().max() <= 1e-5 * a.abs().max()  # measured: bit-identical


def test_torchvision_training_mode_statistics_match():
    ref, body, ours = torchvision_pair(1)
    body.train()
    ours.train()
    x = torch.randn(2, 3, 64, 64)
    a, b = body(x), ours(x)
    assert (a - b).abs().max() <= 1e-5 * a.abs().max()
    ref_sd, our_sd = convert_torchvision_state_dict(ref.state_dict()), ours.state_dict()
    for k in our_sd:
        if "running" in k:
            assert torch.allclose(our_sd[k], ref_sd[k], atol=1e-6), k


@pytest.mark.parametrize("name", ["mac_resnet18", "resnet50_bn"])
def test_sparse_resnet_dissipation_and_hidden_pixel_invariance(name):
    torch.manual_seed(2)
    width = 16
    model = build_resnet(name, width=width).train()  # train: BatchNorm uses batch statistics
    x = torch.randn(2, 3, 128, 96)
    mask = random_patch_mask(2, 12, 0.75)
    hidden = mask.reshape(2, 4, 3)
    pix = hidden.repeat_interleave(32, 1).repeat_interleave(32, 2).unsqueeze(1)
    out = model(x, mask)
    assert torch.all(out.permute(0, 2, 3, 1)[hidden] == 0)
    # hidden pixels influence nothing: neither features nor (visible-site) BatchNorm statistics
    x_other = torch.where(pix, 5 * torch.randn_like(x), x)
    assert torch.equal(model(x_other, mask), out)
    dense = model(x.masked_fill(pix, 0))
    assert dense.permute(0, 2, 3, 1)[hidden].abs().amax(-1).min() > 0


def test_videomac_layout():
    """VideoMAC's ResNet: 4×4/4 stem with bias + LayerNorm, bias-free convs, LN + GELU blocks."""
    ours = build_resnet("mac_resnet50")
    sd = ours.state_dict()
    assert sd["stem.0.weight"].shape == (64, 3, 4, 4) and "stem.0.bias" in sd
    assert sd["layer1.0.conv1.weight"].shape == (64, 64, 1, 1)
    assert sd["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert sd["layer4.2.conv3.weight"].shape == (2048, 512, 1, 1)
    assert not any(k.startswith("layer") and "conv" in k and k.endswith("bias") for k in sd)
    assert not any("running" in k for k in sd)  # no BatchNorm anywhere
    assert ours.layer2[0].conv2.stride == (2, 2) and ours.layer2[0].conv1.stride == (1, 1)
    assert ours.layer3[0].norm1.eps == 1e-6
    # same parameters as torchvision's network except the stem (LN and BN both have weight + bias)
    for name, tv in (("mac_resnet50", torchvision.models.resnet50), ("mac_resnet18", torchvision.models.resnet18)):
        with torch.device("meta"):
            n_tv = sum(p.numel() for n, p in tv(weights=None).named_parameters() if not n.startswith("fc"))
            n_ours = sum(p.numel() for p in build_resnet(name).parameters())
        assert n_ours == n_tv - 64 * 3 * 7 * 7 + (64 * 3 * 4 * 4 + 64), name
    assert build_resnet("mac_resnet18")(torch.randn(1, 3, 64, 64)).shape == (1, 512, 2, 2)


def test_registry_and_validation():
    assert list_models("encoder_resnet") == ["encoder_resnet50_bn", "encoder_resnet_demo"]
    assert list_models("encoder_mac_resnet") == ["encoder_mac_resnet18", "encoder_mac_resnet50"]
    demo = create("encoder_resnet_demo")
    assert isinstance(demo, SparseResNet)
    x = torch.randn(2, 3, 64, 64)
    mask = random_patch_mask(2, 4, 0.5)
    assert demo(x, mask).shape == (2, 128, 2, 2)
    assert [o.shape[1] for o in demo.forward_stages(x, mask)] == [16, 32, 64, 128]
    with pytest.raises(ValueError, match="norm"):
        ResNetConfig(norm="gn")
    with pytest.raises(ValueError, match="unknown ResNet"):
        build_resnet("resnet152")
    with pytest.raises(ValueError, match="unexpected key"):
        convert_torchvision_state_dict({"avgpool.weight": torch.zeros(1)})
    assert set(RESNET_SIZES) >= {"mac_resnet18", "mac_resnet50", "resnet50_bn", "resnet_demo"}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mac_resnet50", "resnet50_bn"])
def test_resnet50_full_size_step(name):
    torch.manual_seed(3)
    model = build_resnet(name).train()
    x = torch.randn(1, 3, 224, 224)
    mask = random_patch_mask(1, 49, 0.75)
    out = model(x, mask)
    assert out.shape == (1, 2048, 7, 7)
    assert torch.all(out.permute(0, 2, 3, 1)[mask.reshape(1, 7, 7)] == 0)
    out.square().mean().backward()
    assert model.layer4[2].conv3.weight.grad is not None
