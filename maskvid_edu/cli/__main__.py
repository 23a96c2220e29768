"""``python -m maskvid_edu.cli``: the same as ``maskvid-edu``."""

from . import main

raise SystemExit(main())
