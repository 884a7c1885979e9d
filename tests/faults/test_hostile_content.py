"""Arbitrary inputs and outputs through real runnables: the chain's result never changes, and
the run is stored with valid JSON, whatever the content."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.runnables import RunnableLambda
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import create_engine, text

from runspan import RunIdGenerator, TracingCallbackHandler
from runspan.storage import StorageSpanProcessor


class Hostile:
    """An object whose repr, str, equality and attribute access all raise."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no equality either")

    __hash__ = object.__hash__

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"no {name}")


def _cyclic_list() -> list[Any]:
    loop: list[Any] = [1, "two"]
    loop.append(loop)
    return loop


def _cyclic_dict() -> dict[str, Any]:
    loop: dict[str, Any] = {"name": "loop"}
    loop["self"] = {"again": loop}
    return loop


def _deep(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


_any_text = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=40)
_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**30, max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    _any_text,
    st.sampled_from(["\ud800", "a\udfffb", "nul\x00byte", "\\u0000", "'); DROP TABLE runs;--"]),
    st.binary(max_size=40),
    st.builds(Hostile),
    st.decimals(allow_nan=True),
    st.datetimes(timezones=st.none() | st.just(dt.timezone.utc)),
    st.uuids(),
    st.sampled_from(["x" * 300_000, "é" * 120_000]),  # over the tracer's cap
)
_keys = st.one_of(
    _any_text, st.integers(), st.none(), st.booleans(), st.tuples(st.integers(), _any_text)
)
_values = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.tuples(inner, inner),
        st.dictionaries(_keys, inner, max_size=5),
        st.frozensets(st.integers() | _any_text, max_size=4),
    ),
    max_leaves=25,
)
_hostile = st.one_of(
    _values,
    st.builds(_cyclic_list),
    st.builds(_cyclic_dict),
    st.builds(_deep, st.integers(min_value=200, max_value=3000)),
)


@dataclass
class Traced:
    url: str
    provider: TracerProvider
    handler: TracingCallbackHandler

    def stored_json(self, run_id: uuid.UUID) -> tuple[Any, Any]:
        """The run's inputs and outputs exactly as the database holds them, as text."""
        assert self.provider.force_flush()
        cast = "::text" if self.url.startswith("postgresql") else ""
        engine = create_engine(self.url)
        with engine.connect() as connection:
            query = text(f"SELECT inputs{cast}, outputs{cast} FROM runs WHERE run_id = :id")
            (row,) = connection.execute(query, {"id": str(run_id)}).all()
        engine.dispose()
        return row[0], row[1]


@pytest.fixture
def traced(database_url: str) -> Iterator[Traced]:
    provider = TracerProvider(id_generator=RunIdGenerator())
    provider.add_span_processor(StorageSpanProcessor(database_url))
    yield Traced(database_url, provider, TracingCallbackHandler(tracer_provider=provider))
    provider.shutdown()


def _strict_json(text: str | int | float | None) -> None:
    """Parses as JSON with no NaN or Infinity (which are not JSON)."""
    assert text is not None
    if isinstance(text, (int, float)):
        # SQLite gives a JSON column numeric affinity: the JSON text of a number is kept as
        # that number.
        assert math.isfinite(text)
        return

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    json.loads(text, parse_constant=refuse)


def _outcome(call: Any) -> Any:
    try:
        return ("returned", call())
    except Exception as error:
        return ("raised", type(error))


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(value=_hostile)
def test_any_input_and_output_is_stored_as_json_and_changes_nothing(
    traced: Traced, value: Any
) -> None:
    identity = RunnableLambda(lambda x: x, name="identity")
    produce = RunnableLambda(lambda _: value, name="produce")
    for runnable, argument in ((identity, value), (produce, "go")):
        untraced = _outcome(lambda: runnable.invoke(argument))  # noqa: B023
        run_id = uuid.uuid4()
        config: Any = {"callbacks": [traced.handler], "run_id": run_id}
        outcome = _outcome(lambda: runnable.invoke(argument, config=config))  # noqa: B023
        assert outcome[0] == untraced[0]
        if outcome[0] == "returned":
            assert outcome[1] is untraced[1] is value  # the very object, untouched
        else:
            assert outcome[1] is untraced[1]
        inputs, outputs = traced.stored_json(run_id)
        _strict_json(inputs)
        if outcome[0] == "returned":
            _strict_json(outputs)


def test_decimal_and_bytes_keep_their_value_in_sql(traced: Traced) -> None:
    """Values JSON has no type for are stored readably, not dropped."""
    run_id = uuid.uuid4()
    value = {"price": decimal.Decimal("1.10"), "blob": b"\x00\x01", "when": dt.date(2026, 1, 2)}
    RunnableLambda(lambda x: x, name="identity").invoke(
        value, config={"callbacks": [traced.handler], "run_id": run_id}
    )
    inputs, _ = traced.stored_json(run_id)
    assert inputs is not None
    stored = json.loads(inputs)
    assert "1.10" in json.dumps(stored["price"])
    assert stored["when"].startswith("2026-01-02")
