"""Sampling with rules: whole traces kept or left out when their root ends, errors, slow traces
and named sessions always kept, SQL rows of traces left out stored without content, memory
bounded."""

from __future__ import annotations

import re
import time
from collections import Counter
from typing import Any

import pytest
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable, RunnableLambda
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from sqlalchemy import create_engine, text

import runspan
from runspan import Sampling, TracingCallbackHandler
from runspan.provider import build_provider
from runspan.sampling import (
    CONTENT_SAMPLED_OUT,
    SAMPLING_ENV,
    SamplingSpanProcessor,
    sampling_from,
)
from runspan.tracer.ids import RunIdGenerator


class Ended(SpanProcessor):
    """What a queue would get."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)

    def traces(self) -> Counter[int]:
        return Counter(span.context.trace_id for span in self.spans if span.context)


def chain() -> Runnable[Any, str]:
    model = GenericFakeChatModel(messages=iter([AIMessage(content="Take a raincoat.")] * 10_000))
    return ChatPromptTemplate.from_template("What to pack for {city}?") | model | StrOutputParser()


RUNS_PER_INVOKE = 4  # the sequence, the prompt, the model, the parser


class Traced:
    def __init__(self, rules: Sampling, **clock: Any) -> None:
        self.sql, self.otlp = Ended(), Ended()
        self.sampler = SamplingSpanProcessor(rules, sql=self.sql, otlp=self.otlp, **clock)
        self.provider = TracerProvider(id_generator=RunIdGenerator())
        self.provider.add_span_processor(self.sampler)
        self.handler = TracingCallbackHandler(tracer_provider=self.provider)

    def invoke(self, runnable: Runnable[Any, Any], value: Any, **config: Any) -> None:
        runnable.invoke(value, config={"callbacks": [self.handler], **config})


def _boom(_: object) -> None:
    raise TimeoutError("the weather service did not answer")


def test_rules_keep_errors_slow_traces_and_named_sessions_whole() -> None:
    """With a ratio of 0 only the rules keep a trace, and a kept trace arrives whole; SQL,
    which these rules do not apply to, gets every span as it ends."""
    traced = Traced(Sampling(ratio=0, slower_than_ms=40, sessions=frozenset({"s-7"})))
    traced.invoke(chain(), {"city": "Paris"})  # nothing keeps it
    failing = chain() | RunnableLambda(_boom, name="weather")
    with pytest.raises(TimeoutError):
        traced.invoke(failing, {"city": "Oslo"})
    slow = chain() | RunnableLambda(lambda text: time.sleep(0.05) or text, name="slow")
    traced.invoke(slow, {"city": "Rome"})
    traced.invoke(chain(), {"city": "Lima"}, metadata={"session_id": "s-7"})
    traced.invoke(chain(), {"city": "Kyiv"}, metadata={"session_id": "s-8"})

    assert len(traced.sql.traces()) == 5
    assert len(traced.sql.spans) == 5 * RUNS_PER_INVOKE + 2
    kept = traced.otlp.traces()
    assert sorted(kept.values()) == [RUNS_PER_INVOKE, RUNS_PER_INVOKE + 1, RUNS_PER_INVOKE + 1]
    roots = {span.name for span in traced.otlp.spans if span.parent is None}
    assert roots == {"RunnableSequence"}
    names = {span.name for span in traced.otlp.spans}
    assert {"weather", "slow"} <= names
    assert (traced.sampler.kept, traced.sampler.left_out) == (3, 2)
    assert traced.sampler.waiting_spans() == 0


def test_a_ratio_keeps_about_that_share_of_traces_each_whole() -> None:
    traced = Traced(Sampling(ratio=0.25))
    runnable = chain()
    for number in range(400):
        traced.invoke(runnable, {"city": f"city {number}"})
    kept = traced.otlp.traces()
    assert 60 <= len(kept) <= 140, len(kept)
    assert set(kept.values()) == {RUNS_PER_INVOKE}  # never half a tree
    assert len(traced.sql.traces()) == 400


def test_the_ratio_is_chosen_from_the_trace_id_alike_in_every_process() -> None:
    """Another process of the same trace decides alike: the choice is the trace id's, and it
    does not lean on the bits UUIDv7 fixes (time, version, variant)."""
    rules = Sampling(ratio=0.5)
    generator = RunIdGenerator()
    ids = [generator.generate_trace_id() for _ in range(2000)]
    assert [rules.by_ratio(i) for i in ids] == [Sampling(ratio=0.5).by_ratio(i) for i in ids]
    assert 850 <= sum(map(rules.by_ratio, ids)) <= 1150


def test_spans_ending_after_their_root_follow_its_decision() -> None:
    traced = Traced(Sampling(ratio=0))
    tracer = traced.provider.get_tracer("app")
    with tracer.start_as_current_span("request"):
        late = tracer.start_span("background job")
    late.end()
    assert traced.otlp.spans == []
    assert [span.name for span in traced.sql.spans] == ["request", "background job"]


def test_sql_content_of_traces_left_out_is_dropped_but_runs_are_counted(
    database_url: str,
) -> None:
    """apply=sql: every run is stored and counted in traces; a trace left out has no inputs or
    outputs (and says why), a kept one (an error) has them (both databases)."""
    rules = sampling_from("ratio=0,apply=sql")
    assert rules is not None
    provider = build_provider("svc", database_url=database_url, sampling=rules)
    handler = TracingCallbackHandler(tracer_provider=provider)
    try:
        chain().invoke({"city": "Paris"}, config={"callbacks": [handler]})
        with pytest.raises(TimeoutError):
            (chain() | RunnableLambda(_boom, name="weather")).invoke(
                {"city": "Oslo"}, config={"callbacks": [handler]}
            )
        assert provider.force_flush()
    finally:
        provider.shutdown()
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            runs = connection.execute(
                text("SELECT trace_id, name, status, inputs, outputs, attributes FROM runs")
            ).all()
            traces = connection.execute(
                text("SELECT trace_id, status, run_count FROM traces ORDER BY status")
            ).all()
    finally:
        engine.dispose()
    assert [(t.status, t.run_count) for t in traces] == [
        ("error", RUNS_PER_INVOKE + 1),
        ("ok", RUNS_PER_INVOKE),
    ]
    failed = traces[0].trace_id
    for run in runs:
        if run.trace_id == failed:
            assert run.inputs is not None, run.name
            assert CONTENT_SAMPLED_OUT not in str(run.attributes)
        else:
            assert (run.inputs, run.outputs) == (None, None), run.name
            assert CONTENT_SAMPLED_OUT in str(run.attributes)
            assert run.status == "ok"


def test_waiting_spans_are_bounded_and_kept_when_over() -> None:
    """A root that never ends cannot hold its trace's spans for ever: over the bound, the
    oldest trace is handed on, kept."""
    traced = Traced(Sampling(ratio=0, max_waiting_spans=5))
    tracer = traced.provider.get_tracer("app")
    with tracer.start_as_current_span("stuck root"):
        for number in range(12):
            tracer.start_span(f"step {number}").end()
            assert traced.sampler.waiting_spans() <= 5
        assert len(traced.otlp.spans) >= 6
    assert traced.sampler.decided_early == 1
    assert len(traced.otlp.spans) == 13  # the rest, and the root, follow the decision
    assert traced.sampler.waiting_spans() == 0


def test_a_trace_waits_no_longer_than_its_bound() -> None:
    now = [0.0]
    traced = Traced(Sampling(ratio=0, max_wait_seconds=60), clock=lambda: now[0])
    tracer = traced.provider.get_tracer("app")
    root = tracer.start_span("hung")
    with trace.use_span(root, end_on_exit=False):
        tracer.start_span("first").end()
    now[0] = 61
    tracer.start_span("another trace").end()  # any span's end checks the oldest
    assert [span.name for span in traced.otlp.spans] == ["first"]
    root.end()


def test_flush_hands_on_waiting_traces_kept() -> None:
    traced = Traced(Sampling(ratio=0))
    tracer = traced.provider.get_tracer("app")
    with tracer.start_as_current_span("open root"):
        tracer.start_span("done").end()
        assert traced.sampler.force_flush()
        assert [span.name for span in traced.otlp.spans] == ["done"]


def test_a_fault_keeps_the_span(monkeypatch: pytest.MonkeyPatch) -> None:
    traced = Traced(Sampling(ratio=0))

    def broken(span: ReadableSpan) -> int:
        raise RuntimeError("boom")

    monkeypatch.setattr("runspan.sampling.span_bytes", broken)
    traced.invoke(chain(), {"city": "Paris"})  # never raises into the app
    assert len(traced.otlp.spans) == RUNS_PER_INVOKE


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ratio=0.1", Sampling(ratio=0.1)),
        (
            "ratio=0, slower_than=2000ms, session=a|b, user=u1, errors=ignore, apply=otlp+sql",
            Sampling(
                ratio=0,
                slower_than_ms=2000,
                sessions=frozenset({"a", "b"}),
                users=frozenset({"u1"}),
                errors=False,
                otlp=True,
                sql_content=True,
            ),
        ),
        ("apply=sql,max_waiting_spans=50,max_wait_seconds=5", None),
    ],
)
def test_rules_from_text(raw: str, expected: Sampling | None) -> None:
    rules = sampling_from(raw)
    assert rules is not None
    if expected is not None:
        assert rules == expected
    else:
        assert (rules.otlp, rules.sql_content, rules.max_waiting_spans) == (False, True, 50)


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("ratio=2", "from 0 to 1"),
        ("ratio=half", "not a number"),
        ("keep=all", "unknown rule 'keep'"),
        ("apply=jaeger", "otlp, sql or otlp+sql"),
        ("errors=maybe", "keep or ignore"),
        ("ratio", "has no value"),
        ("max_waiting_spans=0", "positive integer"),
    ],
)
def test_bad_rules_are_refused_naming_where_they_came_from(raw: str, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)) as error:
        sampling_from(None, environ={SAMPLING_ENV: raw})
    assert SAMPLING_ENV in str(error.value)
    with pytest.raises(ValueError, match="sampling=") as error:
        sampling_from(raw)
    assert "ratio=0.1" in str(error.value)  # and an example of what works


def test_configure_refuses_bad_rules_before_building_anything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(SAMPLING_ENV, "ratio=-1")
    with pytest.raises(ValueError, match=SAMPLING_ENV):
        runspan.configure(storage=False, set_global=False)
    assert runspan.configured_provider() is None
