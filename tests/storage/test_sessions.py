"""Conversations and users: session.id and user.id on every span, the columns and sessions_v,
the command line, and databases made before them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatResult
from langchain_core.runnables import RunnableLambda
from sqlalchemy import create_engine, text

from runspan import TracingCallbackHandler
from runspan.storage import RunStore, SqlSpanExporter
from runspan.storage.engine import create_writer_engine, database_url_from
from runspan.storage.migrate import upgrade
from runspan.testing import SpanCapture, capture_spans
from runspan.testing import postgres as postgres_server
from tests.storage.conftest import Stored
from tests.support import ScriptedAgentModel, runspan_cli


class PricedAgentModel(ScriptedAgentModel):
    """The scripted agent's model, answering as gpt-4o-mini (a model with a seeded price)."""

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        result = super()._generate(messages, *args, **kwargs)
        message = result.generations[0].message
        assert isinstance(message, AIMessage)
        message.response_metadata = {"model_name": "gpt-4o-mini-2024-07-18"}
        return result


def _converse(handler: TracingCallbackHandler, thread: str, user: str, turns: int = 3) -> None:
    """A LangGraph ReAct agent with memory: ``turns`` questions on one thread, by one user."""
    import warnings

    from langchain_core.tools import tool
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.prebuilt import create_react_agent

    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny and 21C in {city}"

    @tool
    def get_time(city: str) -> str:
        """The local time in a city."""
        return f"14:05 in {city}"

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        agent = create_react_agent(
            PricedAgentModel(), [get_weather, get_time], checkpointer=InMemorySaver()
        )
    for n in range(turns):
        agent.invoke(
            {"messages": [("human", f"question {n + 1} about Oslo")]},
            config={
                "callbacks": [handler],
                "configurable": {"thread_id": thread},
                "metadata": {"user_id": user},
            },
        )


class TestSpans:
    def test_every_span_of_a_langgraph_thread_carries_its_session_and_user(
        self, capture: SpanCapture
    ) -> None:
        _converse(capture.handler, "trip-ann", "ann", turns=1)
        spans = capture.spans
        assert len(spans) > 10
        for span in spans:
            attributes = span.attributes or {}
            assert (attributes.get("session.id"), attributes.get("user.id")) == (
                "trip-ann",
                "ann",
            ), span.name

    def test_the_handlers_own_and_a_calls_metadata_which_wins(self) -> None:
        with capture_spans(session_id="default-chat", user_id="anyone") as capture:
            chain = RunnableLambda(lambda x: x, name="outer") | RunnableLambda(lambda x: x)
            chain.invoke(1, config={"callbacks": [capture.handler]})
            chain.invoke(
                1,
                config={
                    "callbacks": [capture.handler],
                    "metadata": {"conversation_id": "c-9", "user_id": 42},
                },
            )
            found = (
                [(span.attributes or {}).get("session.id") for span in capture.spans],
                [(span.attributes or {}).get("user.id") for span in capture.spans],
            )
        sessions, users = found
        assert sessions.count("default-chat") == 3
        assert sessions.count("c-9") == 3
        assert users.count("anyone") == 3
        assert users.count("42") == 3

    def test_a_bad_session_setting_is_refused_early(self) -> None:
        with pytest.raises(ValueError, match="session_id"):
            TracingCallbackHandler(session_id="")


class TestConversations:
    def test_two_users_three_turns_each(self, stored: Stored) -> None:
        """Two sessions, each with its three turns, runs, tokens and cost (gpt-4o-mini's
        price), in sessions_v, `runspan sessions` and `runspan show SESSION`."""
        _converse(stored.handler, "trip-ann", "ann")
        _converse(stored.handler, "trip-bob", "bob")
        with stored.store() as store:
            sessions = {s.session_id: s for s in store.sessions()}
            turns = store.session_trace_ids("trip-ann")
            ann_runs = store.runs(limit=1000)
        assert set(sessions) == {"trip-ann", "trip-bob"}
        ann = sessions["trip-ann"]
        assert (ann.user_id, ann.turns, ann.errors) == ("ann", 3, 0)
        # The first turn calls the tools (two model calls); the others answer from memory.
        assert (ann.input_tokens, ann.output_tokens) == (52 + 96 * 3, 18 + 14 * 3)
        assert ann.cost_usd == pytest.approx((340 * 0.15 + 60 * 0.60) / 1e6)
        assert ann.runs == sum(1 for run in ann_runs if run.session_id == "trip-ann")
        assert len(turns) == 3

        listed = runspan_cli(stored.read_url, "sessions", "--format", "json")
        assert listed.returncode == 0, listed.stderr
        rows = {row["session_id"]: row for row in json.loads(listed.stdout)}
        assert rows["trip-bob"]["user_id"] == "bob"
        assert rows["trip-bob"]["turns"] == 3
        table = runspan_cli(stored.read_url, "sessions", "--user", "ann", columns=80)
        assert "trip-ann" in table.stdout
        assert "trip-bob" not in table.stdout

        shown = runspan_cli(stored.read_url, "show", "trip-ann", columns=80)
        assert shown.returncode == 0, shown.stderr
        assert "session trip-ann · 3 turns" in shown.stdout
        assert [line.strip() for line in shown.stdout.splitlines() if line.startswith("turn")] == [
            "turn 1",
            "turn 2",
            "turn 3",
        ]
        assert "user: question 3 about Oslo" in shown.stdout

        traces = runspan_cli(stored.read_url, "traces", "--session", "trip-bob", "--json")
        assert len(json.loads(traces.stdout)) == 3
        models = runspan_cli(
            stored.read_url, "runs", "--user", "bob", "--type", "llm", "--format", "json"
        )
        assert len(json.loads(models.stdout)) == 4


class TestOlderDatabases:
    def test_the_migration_fills_sessions_from_existing_metadata(self, database_url: str) -> None:
        """Runs stored at revision 0004 name their conversation in metadata only; the upgrade
        gives every run and trace its session and user, and sessions_v counts them."""
        engine = create_writer_engine(database_url_from(database_url))
        upgrade(engine, "0004")
        with engine.begin() as connection:
            for span, parent, metadata in (
                ("a1", None, '{"thread_id": "t-1", "user_id": "u-1"}'),
                ("a2", "a1", None),
                ("b1", None, '{"session_id": "s-2", "thread_id": "ignored"}'),
            ):
                connection.execute(
                    text(
                        "INSERT INTO runs (trace_id, span_id, parent_span_id, name, span_kind,"
                        " status, start_ns, end_ns, metadata) VALUES (:trace, :span, :parent,"
                        " 'old', 'internal', 'ok', 1, 2, :metadata)"
                    ),
                    {
                        "trace": span[0] * 32,
                        "span": span * 8,
                        "parent": parent and parent * 8,
                        "metadata": metadata,
                    },
                )
            for trace in ("a", "b"):
                connection.execute(
                    text(
                        "INSERT INTO traces (trace_id, start_ns, status, run_count, error_count)"
                        " VALUES (:trace, 1, 'ok', 1, 0)"
                    ),
                    {"trace": trace * 32},
                )
        engine.dispose()
        SqlSpanExporter(database_url).shutdown()  # the writer migrates on first use
        with RunStore(database_url) as store:
            by_span = {run.span_id: run for run in store.runs(limit=10)}
            sessions = {s.session_id: s.user_id for s in store.sessions()}
        assert (by_span["a2" * 8].session_id, by_span["a2" * 8].user_id) == ("t-1", "u-1")
        assert by_span["b1" * 8].session_id == "s-2"
        assert sessions == {"t-1": "u-1", "s-2": None}

    def test_a_reader_made_before_keeps_reading_the_views_made_again(
        self, postgres: postgres_server.PostgresServer
    ) -> None:
        """PostgreSQL drops an object's grants with it: the migration that makes the views
        again grants them back to the roles that could read runs."""
        url = postgres_server.create_database(postgres.url)
        try:
            engine = create_writer_engine(database_url_from(url))
            upgrade(engine, "0004")
            engine.dispose()
            admin = create_engine(postgres.url.rsplit("/", 1)[0] + "/" + url.rsplit("/", 1)[1])
            with admin.begin() as connection:
                connection.execute(text("DROP ROLE IF EXISTS old_reader"))
                connection.execute(text("CREATE ROLE old_reader LOGIN PASSWORD 'x'"))
                connection.execute(text("GRANT USAGE ON SCHEMA public TO old_reader"))
                connection.execute(text("GRANT SELECT ON runs, traces, runs_v TO old_reader"))
            admin.dispose()
            SqlSpanExporter(url).shutdown()  # to 0005: the views dropped and made again
            reader = create_engine(
                url.replace(url.split("//", 1)[1].split("@", 1)[0], "old_reader:x", 1)
            )
            with reader.connect() as connection:
                connection.execute(text("SELECT count(*) FROM runs_v")).scalar_one()
                connection.execute(text("SELECT count(*) FROM sessions_v")).scalar_one()
            reader.dispose()
        finally:
            admin = create_engine(postgres.url, isolation_level="AUTOCOMMIT")
            postgres_server.drop_database(postgres.url, url)
            with admin.connect() as connection:
                connection.execute(text("DROP ROLE IF EXISTS old_reader"))
            admin.dispose()
