"""``python -m maskvid_edu ...`` — the same as the ``maskvid-edu`` command."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
