from ._core import *  # noqa: F401,F403
from ._core import __all__, _figure_to_png  # noqa: F401
