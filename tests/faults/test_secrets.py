"""Secrets in inputs, outputs, metadata, prompts and error messages never reach SQL or OTLP.

Checked where a leak would be: the raw bytes of the SQLite files (database and write-ahead log)
and the raw protobuf bytes the OTLP receiver got.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda

import runspan
from runspan import TracingCallbackHandler
from tests.exporters.receivers import GrpcReceiver
from tests.support import UsageChatModel

# The part of each secret that must not appear anywhere (the prefixes alone are harmless).
SECRETS = {
    "openai": "sk-proj-" + "Q7xZ2mN4pL8rT1vW6yB3cD5fG9hJ0kA2",
    "anthropic": "sk-ant-api03-" + "Lm3Np4Qr5St6Uv7Wx8Yz9Ab0Cd1Ef2Gh3",
    "aws": "AKIA" + "Z7Q4N2M8P6R3T5V1",
    "github": "ghp_" + "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3fG5",
    "google": "AIza" + "SyD4fG7hJ0kL3mN6pQ9rS2tU5vW8xY1zA4b",
    "slack": "xoxb-" + "1234567890-0987654321-AbCdEfGhIjKlMnOp",
    "stripe": "sk_live_" + "51HqLm3Np4Qr5St6Uv7Wx8Yz",
    "huggingface": "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh",
    "bearer": "Bearer " + "eyQ0x9Zp2LmN4kJ7hG5fD3sA1",
    "url password": "postgresql://app:" + "Hunt3r2-pass" + "@db.internal/runs",
    "user pattern": "CUST-" + "004217",
}
# What must be absent from the bytes: the secret part of each.
SECRET_PARTS = {
    "openai": "Q7xZ2mN4pL8rT1vW6yB3cD5fG9hJ0kA2",
    "anthropic": "Lm3Np4Qr5St6Uv7Wx8Yz9Ab0Cd1Ef2Gh3",
    "aws": "Z7Q4N2M8P6R3T5V1",
    "github": "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dE3fG5",
    "google": "SyD4fG7hJ0kL3mN6pQ9rS2tU5vW8xY1zA4b",
    "slack": "1234567890-0987654321-AbCdEfGhIjKlMnOp",
    "stripe": "51HqLm3Np4Qr5St6Uv7Wx8Yz",
    "huggingface": "AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh",
    "bearer": "eyQ0x9Zp2LmN4kJ7hG5fD3sA1",
    "url password": "Hunt3r2-pass",
    "user pattern": "004217",
}


def hide_customers(text: str) -> str:
    """The user's own pattern: customer numbers."""
    return re.sub(r"CUST-\d{6}", "CUST-[REDACTED]", text)


@pytest.mark.parametrize("kind", sorted(SECRETS))
def test_a_secret_reaches_neither_sql_nor_otlp(
    kind: str, fresh_globals: None, tmp_path: Path
) -> None:
    secret = SECRETS[kind]
    receiver = GrpcReceiver()
    receiver.start()
    database = tmp_path / "runs.db"
    try:
        provider = runspan.configure(
            set_global=False,
            database_url=f"sqlite:///{database}",
            otlp_endpoint=receiver.endpoint,
            redact=hide_customers,
        )
        handler = TracingCallbackHandler(tracer_provider=provider)
        config: Any = {"callbacks": [handler], "metadata": {"api_key": secret}, "tags": ["t"]}

        chat = (
            ChatPromptTemplate.from_messages([("system", "Key: {key}"), ("human", "{question}")])
            | UsageChatModel(reply=f"use {secret}")
            | StrOutputParser()
        )
        answer = chat.invoke({"key": secret, "question": f"is {secret} valid?"}, config=config)
        assert secret in answer  # the chain's own result is untouched

        echo = RunnableLambda(lambda payload: {"echo": payload}, name="echo")
        echo.invoke({"headers": {"authorization": secret}}, config=config)

        def fail(_: Any) -> None:
            raise PermissionError(f"rejected credentials {secret}")

        with pytest.raises(PermissionError, match="rejected credentials"):
            RunnableLambda(fail, name="login").invoke("x", config=config)
        assert runspan.flush()
    finally:
        runspan.shutdown()
        receiver.stop()

    part = SECRET_PARTS[kind].encode()
    stored = b"".join(path.read_bytes() for path in tmp_path.glob("runs.db*"))
    assert stored, "nothing was stored"
    assert part not in stored, f"{kind} secret found in the SQLite files"
    sent = b"".join(receiver.received.raw)
    assert sent, "nothing was sent"
    assert part not in sent, f"{kind} secret found in what went over OTLP"
