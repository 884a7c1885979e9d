"""Model prices from genai-prices, the maintained price table Pydantic publishes (MIT), into
``model_prices``.

genai-prices ships its table offline (no network): providers, their models, each with a match
rule over model names and prices per million tokens, some starting on a date. Each rule becomes
one or more SQL ``LIKE`` patterns over lower-cased names: ``equals`` as itself, ``starts_with``
as a prefix (dated names such as ``gpt-4o-mini-2024-07-18`` included), ``ends_with`` and
``contains`` alike, ``or`` as one row per branch. Rules runspan cannot say in ``LIKE``
(``regex``, ``and``) and tiered prices are counted and left out; time-of-day discounts are left
out (the price of the rest of the day is kept).

The whole table goes to ``imported_prices``, which no view reads; the prices of the model names
the runs have are copied into ``model_prices`` (``origin = 'import'``), by the import and then by
the writer for each model name it meets, so that ``model_prices``, which every model run's cost
searches, stays small. Rows you add (``origin`` NULL) win over imported ones, and those over the
few prices runspan seeds (``origin = 'seed'``). Cost is still computed when you query.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, text

from runspan.storage.errors import ConfigurationError
from runspan.storage.schema import imported_prices, model_prices

IMPORT = "import"
SEED = "seed"

# genai-prices' provider ids as runspan names providers (gen_ai.provider.name), where they differ.
_PROVIDERS = {
    "aws": "aws.bedrock",
    "azure": "azure.ai.openai",
    "google": "gcp.gen_ai",
    "mistral": "mistral_ai",
    "x-ai": "x_ai",
}


@dataclass(frozen=True)
class Imported:
    """What an import did."""

    version: str
    prices: int  # rows written
    models: int  # models priced
    skipped: int  # models whose match rule or prices cannot be said in SQL


def _patterns(rule: Any) -> list[str] | None:
    """The LIKE patterns of a genai-prices match rule, or None if it has no LIKE form."""
    kind = type(rule).__name__
    if kind == "ClauseEquals":
        return [rule.equals.lower()]
    if kind == "ClauseStartsWith":
        return [rule.starts_with.lower() + "%"]
    if kind == "ClauseEndsWith":
        return ["%" + rule.ends_with.lower()]
    if kind == "ClauseContains":
        return ["%" + rule.contains.lower() + "%"]
    if kind == "ClauseOr":
        found: list[str] = []
        for branch in rule.or_:
            patterns = _patterns(branch)
            if patterns is None:
                return None
            found += patterns
        return found
    return None  # regex, and: not a LIKE


def _per_mtok(value: Any) -> float | None:
    return float(value) if isinstance(value, Decimal) else None


def _price_rows(model: Any) -> list[tuple[int, dict[str, float | None]]] | None:
    """(valid from, prices) of a model, or None when its prices are tiered or unpriced."""
    if isinstance(model.prices, list):  # conditional prices: the ones with a start date
        dated = []
        for conditional in model.prices:
            start = getattr(conditional.constraint, "start_date", None)
            if conditional.constraint is not None and start is None:
                continue  # a time-of-day discount: runspan keeps the price of the rest of the day
            moment = dt.datetime.combine(start, dt.time(), dt.timezone.utc) if start else None
            dated.append((int(moment.timestamp()) * 10**9 if moment else 0, conditional.prices))
        if not dated:
            return None
    else:
        dated = [(0, model.prices)]
    rows = []
    for valid_from, price in dated:
        values = {
            "input_usd_per_mtok": _per_mtok(getattr(price, "input_mtok", None)),
            "output_usd_per_mtok": _per_mtok(getattr(price, "output_mtok", None)),
            "cache_read_usd_per_mtok": _per_mtok(getattr(price, "cache_read_mtok", None)),
            "cache_write_usd_per_mtok": _per_mtok(getattr(price, "cache_write_mtok", None)),
        }
        if values["input_usd_per_mtok"] is None or values["output_usd_per_mtok"] is None:
            return None  # tiered, or priced by something other than tokens
        rows.append((valid_from, values))
    return rows


def price_rows(
    providers: Iterable[Any], source: str
) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """(model, row) for each model_prices row of genai-prices' providers; (model, None) for
    each model left out."""
    for provider in providers:
        name = _PROVIDERS.get(provider.id, provider.id)
        for model in provider.models:
            model_key = f"{provider.id}/{model.id}"
            patterns, prices = _patterns(model.match), _price_rows(model)
            if patterns is None or prices is None:
                yield model_key, None
                continue
            for pattern in dict.fromkeys(patterns):
                for valid_from, values in prices:
                    yield (
                        model_key,
                        {
                            "model_pattern": pattern,
                            "provider": name,
                            "valid_from_ns": valid_from,
                            "source": source,
                            "origin": IMPORT,
                            **values,
                        },
                    )


# Copies imported prices whose pattern matches one of the given lower-cased model names into
# model_prices, unless there already. A handful of names against a few thousand patterns: cheap.
_COPY_USED = """
INSERT INTO model_prices (model_pattern, provider, input_usd_per_mtok, output_usd_per_mtok,
    cache_read_usd_per_mtok, cache_write_usd_per_mtok, valid_from_ns, source, origin)
SELECT ip.model_pattern, ip.provider, ip.input_usd_per_mtok, ip.output_usd_per_mtok,
    ip.cache_read_usd_per_mtok, ip.cache_write_usd_per_mtok, ip.valid_from_ns, ip.source,
    'import'
FROM imported_prices ip
WHERE EXISTS (SELECT 1 FROM ({names}) n WHERE n.name LIKE ip.model_pattern)
AND NOT EXISTS (
    SELECT 1 FROM model_prices mp
    WHERE mp.origin = 'import' AND mp.model_pattern = ip.model_pattern
        AND mp.valid_from_ns = ip.valid_from_ns
        AND coalesce(mp.provider, '') = coalesce(ip.provider, '')
)
ORDER BY ip.id
"""
_RUN_MODEL_NAMES = (
    "SELECT DISTINCT lower(model_name) AS name FROM runs WHERE model_name IS NOT NULL"
)


def copy_prices_of(connection: Connection, names: Iterable[str]) -> None:
    """Give model_prices the imported prices of these model names (the writer calls it for
    the names it has not met before), in the caller's transaction."""
    given = sorted({name.lower() for name in names if name})
    if not given:
        return
    # Typed: PostgreSQL cannot tell a parameter's type from a bare SELECT of it.
    values = " UNION ALL ".join(f"SELECT CAST(:n{i} AS TEXT) AS name" for i in range(len(given)))
    parameters = {f"n{i}": name for i, name in enumerate(given)}
    connection.execute(text(_COPY_USED.format(names=values)), parameters)


def import_prices(engine: Engine) -> Imported:
    """Replace the imported prices with genai-prices' current table, and give model_prices
    the prices of every model name the runs have.

    Raises:
        ConfigurationError: genai-prices is not installed (``pip install 'runspan[prices]'``,
            Python 3.11 or newer).
    """
    try:
        from importlib.metadata import version  # noqa: PLC0415

        from genai_prices.data import providers  # noqa: PLC0415 - optional, and large
    except ImportError:
        raise ConfigurationError(
            "importing prices needs genai-prices: pip install 'runspan[prices]' (Python 3.11+)"
        ) from None
    release = version("genai-prices")
    rows: list[dict[str, Any]] = []
    seen, models, skipped = set(), set(), set()
    for model, row in price_rows(providers, f"genai-prices {release}"):
        if row is None:
            skipped.add(model)
            continue
        models.add(model)
        key = (row["model_pattern"], row["provider"], row["valid_from_ns"])
        if key not in seen:  # two models of one provider naming the same pattern: the first
            seen.add(key)
            rows.append({k: v for k, v in row.items() if k != "origin"})
    with engine.begin() as connection:
        connection.execute(delete(imported_prices))
        for start in range(0, len(rows), 500):
            connection.execute(insert(imported_prices), rows[start : start + 500])
        connection.execute(delete(model_prices).where(model_prices.c.origin == IMPORT))
        connection.execute(text(_COPY_USED.format(names=_RUN_MODEL_NAMES)))
    return Imported(release, len(rows), len(models), len(skipped))
