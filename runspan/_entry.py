"""The ``runspan`` command's entry point: ``runspan --version`` answers before anything else
is imported (the commands need SQLAlchemy, which takes most of a start); everything else runs
the command line."""

from __future__ import annotations

import sys


def run() -> None:
    if sys.argv[1:] == ["--version"]:
        from importlib.metadata import version  # noqa: PLC0415

        print(f"runspan, version {version('runspan')}")
        return
    from runspan.cli import main  # noqa: PLC0415

    main()
