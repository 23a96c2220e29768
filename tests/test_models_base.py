"""The pieces every pre-training model shares: mask rule and dispatch, argument checks, tokens_at."""

from dataclasses import dataclass

import pytest
import torch

from maskvid_edu.masking import MASKERS, VIDEO_MASKERS, mask_count, pair_mask, token_index, tokens_at
from maskvid_edu.models import create
from maskvid_edu.models.base import (
    MASK_TYPES,
    PretrainModel,
    check_divisible,
    check_mask_batch,
    check_positive_ints,
    check_video,
)
from maskvid_edu.models.mam2 import MAM2, MAM2Config
from maskvid_edu.models.videomac import VideoMAC
from maskvid_edu.models.videomae import VideoMAE, VideoMAEConfig


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


@dataclass
class ToyConfig:
    mask_type: str = "tube"
    mask_ratio: float = 0.5


class Toy(PretrainModel):
    """A model with a fixed (4, 4, 4) token grid: exercises every strategy of MASKERS."""

    def __init__(self, **kw):
        super().__init__()
        self.config = ToyConfig(**kw)

    def mask_grid(self, video):
        return (4, 4, 4)


@pytest.mark.parametrize("strategy", sorted(MASKERS))
def test_make_mask_dispatches_to_maskers(strategy):
    model = Toy(mask_type=strategy)
    video = torch.zeros(3, 3, 8, 32, 32)
    mask = model.make_mask(video, generator=seeded(4))
    expected = MASKERS[strategy](3, (4, 4, 4), 0.5, generator=seeded(4))
    assert torch.equal(mask, expected)
    assert model.expected_mask_count((4, 4, 4)) is None  # off outside training
    model.fixed_mask_count = True
    assert model.expected_mask_count((4, 4, 4)) == mask_count(strategy, (4, 4, 4), 0.5)
    assert (mask.sum(dim=1) == model.expected_mask_count((4, 4, 4))).all()


@pytest.mark.parametrize("mask_type", MASK_TYPES)
def test_videomae_and_mam2_masks_are_the_maskers(mask_type):
    clip = torch.randn(2, 3, 9, 64, 64)  # T + 1 frames for MAM2: the encoder's grid is that of the first 8
    video = clip[:, :, :8]
    videomae = create("videomae_vit_demo", mask_type=mask_type)
    if mask_type in VIDEO_MASKERS:  # drawn from the clip itself
        expected = VIDEO_MASKERS[mask_type](video, (4, 8, 8), 0.9, generator=seeded(1))
    else:
        expected = MASKERS[mask_type](2, (4, 8, 8), 0.9, generator=seeded(1))
    assert torch.equal(videomae.make_mask(video, generator=seeded(1)), expected)

    mam2 = create("mam2_vit_demo", mask_type=mask_type)
    assert mam2.mask_grid(clip) == (4, 8, 8)
    assert torch.equal(mam2.make_mask(clip, generator=seeded(1)), expected)


def test_videomac_mask_is_the_pair_mask():
    model = create("videomac_resnet_demo")
    video = torch.randn(2, 3, 2, 96, 96)
    assert model.mask_grid(video) == (2, 3, 3)
    mask = model.make_mask(video, generator=seeded(2))
    assert torch.equal(mask, pair_mask(2, (3, 3), 0.75, generator=seeded(2)))
    assert torch.equal(mask, MASKERS["tube"](2, (2, 3, 3), 0.75, generator=seeded(2)))


def test_unknown_mask_type_names_the_choices():
    model = Toy(mask_type="checkerboard")
    with pytest.raises(ValueError, match="checkerboard") as err:
        model.make_mask(torch.zeros(1, 3, 8, 32, 32))
    for name in MASKERS:
        assert repr(name) in str(err.value)
    model.fixed_mask_count = True
    with pytest.raises(ValueError, match="running_cell"):
        model.expected_mask_count((4, 4, 4))
    for config in (VideoMAEConfig, MAM2Config):
        with pytest.raises(ValueError, match="mask_type must be 'tube', 'random', 'frame' or 'motion_guided', got 'frames'"):
            config(mask_type="frames")


def test_fixed_mask_count_is_written_once():
    for cls in (VideoMAE, MAM2, VideoMAC):
        assert issubclass(cls, PretrainModel)
        assert "fixed_mask_count" not in vars(cls)  # inherited, with its one explanation
        assert cls.fixed_mask_count is False


def test_mask_grid_must_be_defined():
    class NoGrid(PretrainModel):
        pass

    with pytest.raises(NotImplementedError, match="NoGrid"):
        NoGrid().make_mask(torch.zeros(1, 3, 2, 32, 32))


def test_shared_checks():
    @dataclass
    class C:
        dim: int = 6
        heads: int = 4
        flag: bool = True

    check_positive_ints(C(), ("dim", "heads"))
    with pytest.raises(ValueError, match="flag must be a positive int, got True"):
        check_positive_ints(C(), ("dim", "flag"))
    with pytest.raises(ValueError, match="dim 6 must be divisible by heads 4"):
        check_divisible(C(), (("dim", "heads"),))
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        check_video(torch.zeros(3, 4, 32, 32))
    with pytest.raises(ValueError, match="mask has batch 1 but video has batch 2"):
        check_mask_batch(torch.zeros(1, 4, dtype=torch.bool), torch.zeros(2, 3, 2, 8, 8))


def test_tokens_at_is_the_boolean_gather():
    x = torch.randn(3, 10, 5)
    select = torch.stack([torch.randperm(10, generator=seeded(i)) < 4 for i in range(3)])  # (3, 10), 4 per row
    assert torch.equal(tokens_at(x, token_index(select, 4)), x[select].view(3, 4, 5))


def test_every_registered_factory_is_a_module_level_def_of_its_name():
    import inspect
    import sys

    from maskvid_edu.models import list_models
    from maskvid_edu.models.registry import factory

    names = list_models()
    assert len(names) == len(set(names)) > 30
    for name in names:
        fn = factory(name)
        assert fn.__name__ == fn.__qualname__ == name
        module = sys.modules[fn.__module__]
        assert getattr(module, name) is fn  # a module-level def, found by `grep "def <name>"`
        assert f"\ndef {name}(" in inspect.getsource(module)
        assert f'@register("{name}")\ndef {name}(' in inspect.getsource(module)
        assert fn.__doc__


def test_factory_of_an_unknown_name_lists_the_known_ones():
    from maskvid_edu.models.registry import factory

    with pytest.raises(ValueError, match="videomae_vit_demo"):
        factory("videomae_vit_xxl")


def test_sizes_come_from_one_table():
    from maskvid_edu.models.mam2 import MAM2_SIZES, mam2_config
    from maskvid_edu.models.videomae import DECODER_SIZES, videomae_config
    from maskvid_edu.models.vit import VIT_DEMO, VIT_SIZES, encoder_fields, vit_config

    assert set(DECODER_SIZES) == set(VIT_SIZES) | {"demo"}
    assert encoder_fields("demo") == VIT_DEMO
    for size in DECODER_SIZES:
        encoder = vit_config(size)
        assert videomae_config(size).encoder_config() == encoder
        if size in MAM2_SIZES:
            c = mam2_config(size)
            assert c.encoder_config() == encoder
            assert (c.appearance_dim, c.appearance_heads) == (c.motion_dim, c.motion_heads) == (
                DECODER_SIZES[size]["decoder_dim"], DECODER_SIZES[size]["decoder_heads"])
    with pytest.raises(ValueError, match="size"):
        videomae_config("xl")
    with pytest.raises(ValueError, match="size"):
        mam2_config("h")


def test_encoder_fields_are_vit_config_fields():
    import dataclasses

    from maskvid_edu.models.vit import ENCODER_FIELDS, EncoderFields, ViTConfig

    vit = {f.name: f for f in dataclasses.fields(ViTConfig)}
    ours = dataclasses.fields(EncoderFields)
    assert tuple(f.name for f in ours) == ENCODER_FIELDS == tuple(n for n in vit if n in ENCODER_FIELDS)
    for f in ours:
        assert (f.type, f.default) == (vit[f.name].type, vit[f.name].default)
    assert EncoderFields(dim=384, heads=6).encoder_config() == ViTConfig(dim=384, heads=6)
    for config in (VideoMAEConfig, MAM2Config):
        assert tuple(f.name for f in dataclasses.fields(config))[: len(ENCODER_FIELDS)] == ENCODER_FIELDS


def test_config_differences_lists_exactly_the_fields_that_differ():
    from maskvid_edu.models.registry import config_differences, format_config_differences

    rows = config_differences("videomae_vit_demo", "videomae_vit_b", {"normalization": "none"})
    fields = {name: (a, b) for name, a, b in rows}
    assert fields["patch"] == (8, 16) and fields["dim"] == (128, 768)
    assert fields["normalization"] == ("none", "videomae")
    assert "tubelet" not in fields and "mask_ratio" not in fields  # equal in both
    assert config_differences("videomae_vit_b", "videomae_vit_b") == []
    table = format_config_differences(rows, "preset", "paper").splitlines()
    assert table[0].split() == ["field", "preset", "paper"] and len(table) == len(rows) + 1
    with pytest.raises(ValueError, match="not of one model family"):
        config_differences("videomae_vit_demo", "vjepa_vit_demo")
