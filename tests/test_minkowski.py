"""MinkowskiEngine backend ≡ masked backend, and the installer's pure-Python steps.

The equivalence tests run only where MinkowskiEngine is installed (``make minkowski``); the
installer tests always run. Tolerances on 75 %-masked maps: float32 ≤ 1e-5, float64 ≤ 1e-12
(measured here over forward, input and parameter gradients: ≤ 6e-6 and ≤ 1.4e-14).
"""

import importlib.util
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from maskvid_edu import minkowski_build
from maskvid_edu.sparse import (
    SparseBatchNorm2d,
    SparseConv2d,
    SparseGRN,
    SparseLayerNorm,
    SparseLinear,
    SparseMaxPool2d,
    active_mask,
    to_dense,
    to_sparse,
    torch_to_minkowski_kernel,
)

HAVE_ME = importlib.util.find_spec("MinkowskiEngine") is not None


def needs_me(test):
    """Marker ``minkowski`` + skip with the install hint where MinkowskiEngine is missing."""
    skip = pytest.mark.skipif(not HAVE_ME, reason="MinkowskiEngine not installed: run `make minkowski`")
    return pytest.mark.minkowski(skip(test))


TOL = {torch.float32: 1e-5, torch.float64: 1e-12}


def masked_input(b=2, c=6, h=12, w=10, ratio=0.75, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, h, w, generator=g, dtype=dtype)
    mask = torch.rand(b, h, w, generator=g) < ratio  # True = masked
    mask[:, 0, 0] = False  # every sample keeps at least one visible site
    return x, mask


def run_both(layer: nn.Module, x: torch.Tensor, mask: torch.Tensor):
    """Forward + backward with each backend: [(output, input grad, parameter grads, active sites)]."""
    results, shape = [], None
    for backend in ("masked", "minkowski"):
        layer.zero_grad(set_to_none=True)
        xi = x.clone().requires_grad_(True)
        s = layer(to_sparse(xi, mask, backend=backend))
        if shape is None:  # the masked run tells the output grid (B, H', W')
            shape = (x.shape[0], s.shape[2], s.shape[3])
        y = to_dense(s, shape)
        g = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=y.dtype)
        (y * g).sum().backward()
        grads = {n: p.grad.clone() for n, p in layer.named_parameters()}
        results.append((y.detach(), xi.grad.clone(), grads, active_mask(s, shape)))
    return results


CASES = {
    "conv3x3": lambda: SparseConv2d(6, 8, 3),
    "channelwise7x7": lambda: SparseConv2d(6, 6, 7, groups=6),
    "downsample2x2_s2": lambda: SparseConv2d(6, 8, 2, stride=2),
    "conv3x3_s2": lambda: SparseConv2d(6, 8, 3, stride=2, bias=False),
    "conv1x1_s2": lambda: SparseConv2d(6, 8, 1, stride=2, bias=False),
    "conv1x1": lambda: SparseConv2d(6, 8, 1),
    "grouped3x3": lambda: SparseConv2d(6, 8, 3, groups=2),
    "layernorm": lambda: SparseLayerNorm(6),
    "linear": lambda: SparseLinear(6, 4),
    "grn": lambda: SparseGRN(6),
    "batchnorm": lambda: SparseBatchNorm2d(6),
    "maxpool3x3_s2": lambda: SparseMaxPool2d(3, 2),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", list(CASES))
@needs_me
def test_minkowski_matches_masked(case, dtype):
    torch.manual_seed(0)
    layer = CASES[case]().to(dtype)
    with torch.no_grad():
        for n, p in layer.named_parameters():
            if case in ("grn", "layernorm", "batchnorm"):
                p.normal_()
    x, mask = masked_input(dtype=dtype)
    (y1, gx1, gp1, a1), (y2, gx2, gp2, a2) = run_both(layer, x, mask)
    assert torch.equal(a1, a2), "active sites differ"
    tol = TOL[dtype] * max(1.0, y1.abs().max().item())
    assert (y1 - y2).abs().max() <= tol, f"forward {(y1 - y2).abs().max():.3g}"
    assert (gx1 - gx2).abs().max() <= tol, f"input grad {(gx1 - gx2).abs().max():.3g}"
    for n in gp1:
        scale = max(1.0, gp1[n].abs().max().item())
        assert (gp1[n] - gp2[n]).abs().max() <= TOL[dtype] * scale * 10, f"{n} grad"


@needs_me
@pytest.mark.filterwarnings("ignore:.*should not be instantiated:DeprecationWarning")  # inside the engine's modules
def test_kernel_layout_with_minkowski_modules():
    """GUIDE §7's layout facts, checked on MinkowskiEngine's own modules."""
    import MinkowskiEngine as ME

    torch.manual_seed(1)
    x, mask = masked_input(c=4)
    ref3 = SparseConv2d(4, 5, 3, bias=False).double()
    me3 = ME.MinkowskiConvolution(4, 5, kernel_size=3, dimension=2).double()
    me3.kernel.data.copy_(torch_to_minkowski_kernel(ref3.weight.detach()))  # kernel[dw·3 + dh, i, o] = W[o, i, dh, dw]
    refc = SparseConv2d(4, 4, 3, groups=4, bias=False).double()
    mec = ME.MinkowskiChannelwiseConvolution(4, kernel_size=3, dimension=2).double()
    # channelwise kernel[dw·3 + dh, c] = W[c, 0, dh, dw]
    mec.kernel.data.copy_(refc.weight.detach()[:, 0].permute(2, 1, 0).reshape(9, 4))
    for ref, me in ((ref3, me3), (refc, mec)):
        expect = to_dense(ref(to_sparse(x, mask)))
        got = to_dense(me(to_sparse(x, mask, backend="minkowski")), (2, 12, 10))
        assert (expect - got).abs().max() < 1e-12


@needs_me
@pytest.mark.parametrize("name", ["encoder_convnextv2_demo", "encoder_resnet_demo", "encoder_resnet50_bn"])
def test_whole_encoder_same_with_both_backends(name):
    from maskvid_edu.models import registry
    from maskvid_edu.models import convnextv2, resnet  # noqa: F401  (register the encoders)

    overrides = {"width": 8} if name == "encoder_resnet50_bn" else {}
    torch.manual_seed(2)
    masked = registry.create(name, **overrides).double().train()
    mink = registry.create(name, backend="minkowski", **overrides).double().train()
    mink.load_state_dict(masked.state_dict())
    x = torch.randn(2, 3, 64, 96, dtype=torch.float64)
    mask = torch.rand(2, 6, generator=torch.Generator().manual_seed(3)) < 0.75
    mask[:, 0] = False
    y1, y2 = masked(x, mask), mink(x, mask)
    assert (y1 - y2).abs().max() < 1e-10
    y1.square().sum().backward()
    y2.square().sum().backward()
    for (n, p1), p2 in zip(masked.named_parameters(), mink.parameters()):
        assert (p1.grad - p2.grad).abs().max() < 1e-9 * max(1.0, p1.grad.abs().max().item()), n


# ------------------------------------------------------------------------------------------
# installer (no build)
# ------------------------------------------------------------------------------------------
def test_patch_sources_rewrites_the_five_files(tmp_path: Path):
    for rel in minkowski_build.PATCHED_FILES:
        f = tmp_path / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        line = ("from collections import Sequence, namedtuple\n" if "KernelGenerator" in rel
                else "from collections import Sequence\n")
        f.write_text("import torch\n" + line + "x = 1\n")
    patched = minkowski_build.patch_sources(tmp_path)
    assert len(patched) == 5
    for rel in minkowski_build.PATCHED_FILES:
        text = (tmp_path / rel).read_text()
        assert "from collections.abc import Sequence" in text
        assert "from collections import Sequence" not in text
        compile(text, rel, "exec")
    assert "from collections import namedtuple" in (tmp_path / minkowski_build.PATCHED_FILES[0]).read_text()
    assert minkowski_build.patch_sources(tmp_path) == []  # idempotent
    (tmp_path / minkowski_build.PATCHED_FILES[1]).unlink()
    with pytest.raises(FileNotFoundError, match="MinkowskiCoordinateManager"):
        minkowski_build.patch_sources(tmp_path)


def test_wheel_cache_is_keyed_by_torch_and_python(tmp_path, monkeypatch):
    monkeypatch.setenv("MASKVID_WHEEL_CACHE", str(tmp_path))
    cache = minkowski_build.default_cache_dir()
    assert cache.parent == tmp_path
    assert torch.__version__.split("+")[0] in cache.name and "cp3" in cache.name and cache.name.endswith("cpu")
    assert minkowski_build.default_cache_dir(cuda=True).name.endswith("cuda")
    assert minkowski_build.find_cached_wheel(cache) is None
    cache.mkdir()
    wheel = cache / "MinkowskiEngine-0.5.4-cp311-cp311-linux_x86_64.whl"
    wheel.write_bytes(b"")
    assert minkowski_build.find_cached_wheel(cache) == wheel


def test_installer_stops_with_apt_command_without_openblas(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(minkowski_build, "engine_installed", lambda python=None: False)
    monkeypatch.setattr(minkowski_build, "openblas_available", lambda: False)
    assert minkowski_build.main(["--cache-dir", str(tmp_path / "empty")]) == 1
    assert "apt-get install -y libopenblas-dev" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        minkowski_build.main(["--jobs", "0"])
