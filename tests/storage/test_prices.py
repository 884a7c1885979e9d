"""Model prices from the maintained table (genai-prices): imported, used for cost, and yours
winning over them."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import create_engine, text

from tests.storage.conftest import Stored
from tests.support import UsageChatModel, runspan_cli

pytest.importorskip("genai_prices", reason="genai-prices needs Python 3.11 or newer")

# UsageChatModel reports 11 input tokens (3 read from cache, 2 written to it) and 7 output.
_INPUT, _CACHE_READ, _CACHE_WRITE, _OUTPUT = 11, 3, 2, 7


def _deepseek_cost(stored: Stored) -> float | None:
    with stored.store() as store:
        (run,) = [r for r in store.runs(limit=50) if r.model_name == "deepseek-chat-2025"]
    return run.cost_usd


def _ask(stored: Stored) -> None:
    UsageChatModel(model="deepseek-chat").invoke("hi", config={"callbacks": [stored.handler]})


def _expected(input_price: float, cache_read: float, output_price: float) -> float:
    uncached = _INPUT - _CACHE_READ - _CACHE_WRITE
    cost = (
        uncached * input_price
        + _CACHE_READ * cache_read
        + _CACHE_WRITE * input_price  # no cache-write price: at the input price
        + _OUTPUT * output_price
    )
    return cost / 1e6


def test_a_model_only_the_imported_table_knows_gets_a_cost(stored: Stored) -> None:
    """Before the import, deepseek-chat has no price (NULL cost); `runspan prices update`
    prices the runs already stored and the runs stored after it."""
    _ask(stored)
    assert _deepseek_cost(stored) is None
    done = runspan_cli(stored.url, "prices", "update")
    assert done.returncode == 0, done.stderr
    assert "imported" in done.stdout
    assert "from genai-prices" in done.stdout
    assert _deepseek_cost(stored) == pytest.approx(_expected(0.135, 0.035, 0.55))
    stored.provider.force_flush()
    _ask(stored)  # a run after the import, of a model the writer meets again
    with stored.store() as store:
        costs = [r.cost_usd for r in store.runs(limit=50) if r.model_name == "deepseek-chat-2025"]
    assert costs == [pytest.approx(_expected(0.135, 0.035, 0.55))] * 2

    listed = runspan_cli(
        stored.read_url, "prices", "list", "--model", "deepseek-chat-2025", "--format", "json"
    )
    (used, *_) = json.loads(listed.stdout)
    assert (used["model_pattern"], used["origin"], used["provider"]) == (
        "deepseek-chat%",
        "import",
        "deepseek",
    )


def test_a_price_of_yours_wins_and_an_update_keeps_it(stored: Stored) -> None:
    _ask(stored)
    assert runspan_cli(stored.url, "prices", "update").returncode == 0
    stored.flush()
    engine = create_engine(stored.url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO model_prices (model_pattern, input_usd_per_mtok,"
                " output_usd_per_mtok, valid_from_ns, source) VALUES ('deepseek%', 1, 2, 0, 'ours')"
            )
        )
    engine.dispose()
    assert _deepseek_cost(stored) == pytest.approx(_expected(1, 1, 2))
    again = runspan_cli(stored.url, "prices", "update")  # replaces the imported rows only
    assert again.returncode == 0, again.stderr
    assert _deepseek_cost(stored) == pytest.approx(_expected(1, 1, 2))
