"""model_prices.origin and .provider: imported prices (`runspan prices update`) beside the seeded
ones and yours, and imported_prices, genai-prices' whole table; the views made again with a price
join that prefers yours, then imported, then seeded prices

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op

_ID = sa.Integer().with_variant(sa.BigInteger(), "postgresql")

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_VIEWS = ("sessions_v", "llm_calls", "traces_v", "runs_v")  # dependents first

# The price of a model run: among the prices valid when it started whose pattern matches its
# model, yours first, then imported, then seeded; then the longest pattern; then the latest;
# then the first imported (genai-prices lists each model's own provider before resellers).
_PRICE_JOIN = """
LEFT JOIN model_prices p ON p.id = (
    SELECT mp.id FROM model_prices mp
    WHERE lower(r.model_name) LIKE mp.model_pattern AND mp.valid_from_ns <= r.start_ns
    ORDER BY CASE mp.origin WHEN 'import' THEN 1 WHEN 'seed' THEN 2 ELSE 0 END,
        length(mp.model_pattern) DESC, mp.valid_from_ns DESC, mp.id
    LIMIT 1
)"""


def _views(dialect: str) -> list[str]:
    initial = importlib.import_module("runspan.storage.migrations.versions.0001_initial")
    sessions = importlib.import_module(
        "runspan.storage.migrations.versions.0005_sessions_and_users"
    )
    views: list[str] = [
        view.replace(initial._PRICE_JOIN, _PRICE_JOIN) for view in initial._views(dialect)
    ]
    assert _PRICE_JOIN in views[0], "runs_v's price join was not replaced"
    return [*views, sessions._SESSIONS[dialect]]


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    for view in _VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {view}")
    with op.batch_alter_table("model_prices") as batch:
        batch.add_column(sa.Column("origin", sa.String(16)))
        batch.add_column(sa.Column("provider", sa.Text()))
        batch.drop_constraint("uq_model_prices_model_pattern_valid_from_ns", type_="unique")
        batch.create_unique_constraint(
            "uq_model_prices_model_pattern_provider_valid_from_ns_origin",
            ["model_pattern", "provider", "valid_from_ns", "origin"],
        )
    # The prices revision 0001 seeded name their public price page as their source.
    op.execute("UPDATE model_prices SET origin = 'seed' WHERE source LIKE 'https://%'")
    op.create_table(
        "imported_prices",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("model_pattern", sa.Text(), nullable=False),
        sa.Column("provider", sa.Text()),
        sa.Column("input_usd_per_mtok", sa.Float(), nullable=False),
        sa.Column("output_usd_per_mtok", sa.Float(), nullable=False),
        sa.Column("cache_read_usd_per_mtok", sa.Float()),
        sa.Column("cache_write_usd_per_mtok", sa.Float()),
        sa.Column("valid_from_ns", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_imported_prices"),
    )
    for statement in _views(dialect):
        op.execute(statement)
    if dialect == "postgresql":
        sessions = importlib.import_module(
            "runspan.storage.migrations.versions.0005_sessions_and_users"
        )
        sessions._grant_views_to_readers()


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for view in _VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {view}")
    op.execute("DELETE FROM model_prices WHERE origin = 'import'")
    op.drop_table("imported_prices")
    with op.batch_alter_table("model_prices") as batch:
        batch.drop_constraint(
            "uq_model_prices_model_pattern_provider_valid_from_ns_origin", type_="unique"
        )
        batch.create_unique_constraint(
            "uq_model_prices_model_pattern_valid_from_ns", ["model_pattern", "valid_from_ns"]
        )
        batch.drop_column("provider")
        batch.drop_column("origin")
    sessions = importlib.import_module(
        "runspan.storage.migrations.versions.0005_sessions_and_users"
    )
    initial = importlib.import_module("runspan.storage.migrations.versions.0001_initial")
    for statement in [*initial._views(dialect), sessions._SESSIONS[dialect]]:
        op.execute(statement)
