"""A FastAPI app written the way production LangChain apps are, for tests/web/test_uvicorn.py.

``runspan.configure()`` at start-up, OpenTelemetry's FastAPI and httpx instrumentations, async
and sync endpoints that run a chain and a LangGraph agent, and code that calls out over HTTP
after awaiting a model inside a lambda, a tool and a graph node. Every call out goes to this
app's own ``/ping``, and says where it was made from (``?at=``), so the test can find its span.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
from collections.abc import AsyncIterator
from typing import Any, TypedDict

import httpx
from fastapi import FastAPI
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda
from langchain_core.tools import tool
from langgraph.graph import END, START, StateGraph
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

import runspan

# WEB_APP_SIGTERM=own: an app with a SIGTERM handler of its own, which ends the process with no
# exit handlers, and the README's lifespan that flushes runspan after uvicorn's graceful shutdown.
OWN_SIGTERM_HANDLER = os.environ.get("WEB_APP_SIGTERM") == "own"
if OWN_SIGTERM_HANDLER:
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(0))

runspan.configure(service_name="web-app")  # the database comes from RUNSPAN_DATABASE_URL
HTTPXClientInstrumentor().instrument()
SELF = os.environ["WEB_APP_URL"]

model = GenericFakeChatModel(messages=itertools.repeat(AIMessage(content="four")))
handler = runspan.TracingCallbackHandler()
prompt = ChatPromptTemplate.from_template("What is 1 + {n}?")


async def call_out(at: str) -> None:
    async with httpx.AsyncClient() as client:
        (await client.get(f"{SELF}/ping", params={"at": at})).raise_for_status()


def call_out_sync(at: str) -> None:
    with httpx.Client() as client:
        client.get(f"{SELF}/ping", params={"at": at}).raise_for_status()


async def check_answer(answer: str) -> str:
    await model.ainvoke(f"Is {answer} right?")
    await call_out("lambda")
    return answer


def check_answer_sync(answer: str) -> str:
    model.invoke(f"Is {answer} right?")
    call_out_sync("lambda")
    return answer


async_chain = prompt | model | StrOutputParser() | RunnableLambda(check_answer)
sync_chain = prompt | model | StrOutputParser() | RunnableLambda(check_answer_sync)


@tool
async def lookup(city: str) -> str:
    """Look up the weather in a city."""
    await model.ainvoke(f"weather in {city}?")
    await call_out("tool")
    return "sunny"


class State(TypedDict):
    city: str
    weather: str


async def research(state: State) -> dict[str, Any]:
    weather = await lookup.ainvoke({"city": state["city"]})
    await call_out("node")
    return {"weather": weather}


graph = StateGraph(State)
graph.add_node("research", research)
graph.add_edge(START, "research")
graph.add_edge("research", END)
agent = graph.compile()


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    runspan.shutdown()


app = FastAPI(lifespan=lifespan if OWN_SIGTERM_HANDLER else None)


@app.get("/ping")
async def ping(at: str) -> dict[str, str]:
    return {"at": at}


@app.get("/chain/{n}")
async def chain_endpoint(n: int) -> dict[str, Any]:
    request = trace.get_current_span()
    answer = await async_chain.ainvoke({"n": n}, config={"callbacks": [handler]})
    kept = trace.get_current_span() is request
    await call_out("endpoint")
    return {"answer": answer, "kept": kept}


@app.get("/agent/{city}")
async def agent_endpoint(city: str) -> dict[str, Any]:
    request = trace.get_current_span()
    state = await agent.ainvoke({"city": city, "weather": ""}, config={"callbacks": [handler]})
    kept = trace.get_current_span() is request
    await call_out("endpoint")
    return {"answer": state["weather"], "kept": kept}


@app.get("/sync/{n}")
def sync_endpoint(n: int) -> dict[str, Any]:
    request = trace.get_current_span()
    answer = sync_chain.invoke({"n": n}, config={"callbacks": [handler]})
    kept = trace.get_current_span() is request
    call_out_sync("endpoint")
    return {"answer": answer, "kept": kept}


FastAPIInstrumentor.instrument_app(app)
