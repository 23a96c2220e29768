"""Write the Jupyter Book config of one build from ``book/_config.yml``.

Two things change between builds, and only these:

- ``--execute force`` (``make book``: run every chapter in a fresh kernel) or ``--execute off``
  (``make book-stored`` and the browser tests: render the committed outputs);
- ``--repository URL``: where the book's source lives online, e.g.
  ``https://github.com/OWNER/REPO``. With it, every chapter gets launch buttons (Binder, as
  ``launch_buttons`` in ``_config.yml`` configures it) that open ``book/NN_….ipynb`` of that
  repository. Without it the launch buttons are left out: a Binder link needs a repository
  to build, and a wrong one would send readers elsewhere.

Usage: ``python book/book_config.py --execute off [--repository URL] OUT.yml``.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import yaml

BOOK = Path(__file__).resolve().parent
EXECUTE = ("force", "off")
REPOSITORY = re.compile(r"^https://(github\.com|gitlab\.com)/[\w.-]+/[\w.-]+$")


def book_config(execute: str, repository: str = "", base: Path = BOOK / "_config.yml") -> dict:
    """The config of ``base`` for one build (see the module docstring)."""
    if execute not in EXECUTE:
        raise ValueError(f"execute must be one of {EXECUTE}, got {execute!r}")
    config = yaml.safe_load(base.read_text(encoding="utf-8"))
    config.setdefault("execute", {})["execute_notebooks"] = execute
    repository = repository.strip().rstrip("/")
    if repository:
        if not REPOSITORY.match(repository):
            raise ValueError("the book's repository must be a GitHub or GitLab URL such as "
                             f"https://github.com/OWNER/REPO, got {repository!r}")
        config.setdefault("repository", {})["url"] = repository
    else:
        config.pop("launch_buttons", None)
        config.setdefault("repository", {})["url"] = ""
    return config


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execute", choices=EXECUTE, required=True)
    parser.add_argument("--repository", default="", help="https://github.com/OWNER/REPO")
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    config = book_config(args.execute, args.repository)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True),
                        encoding="utf-8")
    buttons = "launch buttons for " + args.repository if args.repository else (
        "no launch buttons (set BOOK_REPOSITORY=https://github.com/OWNER/REPO to add them)")
    print(f"{args.out}: execute {args.execute}, {buttons}")
    return args.out


if __name__ == "__main__":
    main()
