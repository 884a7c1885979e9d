"""The fault suite: every test here is marked ``faults`` (``pytest -m faults`` runs it alone).

Each case asserts what a user would check when something around runspan goes wrong: the
chain's own result, and what ended up in SQL and over OTLP.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.exporters.conftest import receiver  # noqa: F401 - the OTLP tests' fixture, shared
from tests.storage.conftest import stored  # noqa: F401 - the storage tests' fixture, shared

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.faults)
