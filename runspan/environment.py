"""The OpenTelemetry environment runspan's provider is built from: the service name, and the
SDK variables that shape it, checked when ``configure()`` runs."""

from __future__ import annotations

import os
from collections.abc import Mapping

SERVICE_NAME_ENV = "OTEL_SERVICE_NAME"
DEFAULT_SERVICE_NAME = "langchain-app"


def service_name_from(argument: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The service name: the argument, ``OTEL_SERVICE_NAME``, or ``langchain-app``."""
    env = os.environ if environ is None else environ
    if argument is not None and not isinstance(argument, str):
        raise ValueError(f"service_name={argument!r}: use a non-empty string")
    name = argument if argument is not None else env.get(SERVICE_NAME_ENV, "").strip()
    if argument is not None and not argument.strip():
        raise ValueError("service_name must not be empty")
    return name or DEFAULT_SERVICE_NAME


_SAMPLERS = frozenset(
    {
        "always_on",
        "always_off",
        "traceidratio",
        "parentbased_always_on",
        "parentbased_always_off",
        "parentbased_traceidratio",
    }
)
_BSP_VARIABLES = (
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BSP_MAX_QUEUE_SIZE",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
    "OTEL_BSP_EXPORT_TIMEOUT",
)


def check_sdk_environment(environ: Mapping[str, str] | None = None) -> None:
    """Checks the OpenTelemetry SDK variables that shape runspan's provider.

    The SDK itself warns about a malformed one and carries on with a default, which hides a
    typo in a deployment (a sampler that silently samples everything, a resource attribute
    lost); runspan refuses it when ``configure()`` runs instead.

    Raises:
        ValueError: naming the variable and what it accepts.
    """
    env = os.environ if environ is None else environ
    for name in _BSP_VARIABLES:
        raw = env.get(name, "").strip()
        if raw and not (raw.isdigit() and int(raw) > 0):
            raise ValueError(f"{name}={raw!r}: use a positive whole number (milliseconds/spans)")
    attributes = env.get("OTEL_RESOURCE_ATTRIBUTES", "").strip()
    for number, entry in enumerate(attributes.split(",") if attributes else (), start=1):
        key, sep, _ = entry.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"OTEL_RESOURCE_ATTRIBUTES: entry {number} is not key=value")
    sampler = env.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if sampler and sampler not in _SAMPLERS:
        raise ValueError(
            f"OTEL_TRACES_SAMPLER={sampler!r}: use one of {', '.join(sorted(_SAMPLERS))}"
        )
    argument = env.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    if sampler.endswith("traceidratio") and argument:
        try:
            ratio = float(argument)
        except ValueError:
            ratio = -1.0
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"OTEL_TRACES_SAMPLER_ARG={argument!r}: use a ratio from 0 to 1")
