"""Pre-training models, built by name.

    from maskvid_edu.models import create, list_models
    model = create("videomae_vit_demo")          # any config field can be overridden by keyword
    mask = model.make_mask(video)                # the method's default mask, bool (B, N)
    out = model(video, mask)                     # PretrainOutput: loss, pred, target, mask, terms

Every pre-training model is a :class:`~maskvid_edu.models.base.PretrainModel` (the contract, the
mask rule). Each family lives in one file and registers its sizes when imported below, one
``def`` per name built from the family's size table; adding a family is one import line.
"""

from .base import PretrainModel
from .output import PretrainOutput
from .registry import create, list_models, register

# model families (importing a module registers its models)
from . import videomae  # noqa: E402,F401  videomae_vit_{s,b,l,h,g,demo}
from . import mam2  # noqa: E402,F401  mam2_vit_{s,b,l,demo}
from . import convnextv2, resnet  # noqa: E402,F401  encoder_convnextv2_*, encoder_*resnet*
from . import videomac  # noqa: E402,F401  videomac_convnextv2_*, videomac_resnet{18,50,50_tv,_demo}
from . import vjepa  # noqa: E402,F401  vjepa_vit_{s,b,l,h,demo}

__all__ = ["create", "list_models", "register", "PretrainModel", "PretrainOutput"]
