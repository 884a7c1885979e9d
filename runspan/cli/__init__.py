"""The ``runspan`` command.

``app`` holds the group and what its commands share; each other module holds commands:
``history`` (runs, traces, sessions, show, stats, sql, prune, db), ``feedback``, ``prices``,
``export``, ``serve`` and ``demo``. Importing them
registers them. Rendering (``render``) and the demo's chain (``demo_chain``, which needs
LangChain) are imported only by the commands that draw or run something, so the command
starts fast.
"""

from runspan.cli import demo, export, feedback, history, prices, serve
from runspan.cli.app import main

__all__ = ["main"]

del demo, export, feedback, history, prices, serve  # imported for their commands
