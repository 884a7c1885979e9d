"""runs_v looks a price up only for runs that reported tokens (the only runs with a cost), and
only when a query reads the cost

Its price was a LEFT JOIN whose key is a correlated lookup: both databases ran the lookup for
every run read, model call or not, and whether the query read the cost or not. The cost is now a
subquery of its own behind the same condition the cost had, with the same value.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

from __future__ import annotations

import importlib

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_COSTED = "(r.input_tokens IS NOT NULL OR r.output_tokens IS NOT NULL)"


def _runs_v(dialect: str, *, scalar: bool) -> str:
    """runs_v as revision 0007 made it, or (``scalar``) with its cost as a subquery."""
    prices = importlib.import_module("runspan.storage.migrations.versions.0007_price_origins")
    view: str = prices._views(dialect)[0]
    assert view.startswith("CREATE VIEW runs_v"), view
    assert prices._PRICE_JOIN in view, "runs_v's price join changed"
    if not scalar:
        return view
    initial = importlib.import_module("runspan.storage.migrations.versions.0001_initial")
    cost: str = initial._COST
    assert cost in view, "runs_v's cost expression changed"
    # The lookup of revision 0007's join, and the cost's formula without its condition: a run
    # without tokens has no cost, and one whose model has no price gets no row, so NULL.
    lookup: str = prices._PRICE_JOIN.split("ON p.id = ", 1)[1]
    formula = cost.split("THEN NULL ELSE", 1)[1].rsplit("END", 1)[0]
    priced = (
        f"CASE WHEN {_COSTED} THEN (SELECT {formula.strip()} FROM model_prices p"
        f" WHERE p.id = {lookup.strip()}) END"
    )
    return view.replace(cost, priced).replace(prices._PRICE_JOIN, "")


def _replace(dialect: str, *, scalar: bool) -> None:
    view = _runs_v(dialect, scalar=scalar)
    if dialect == "postgresql":
        # Same columns, so the views and functions that read runs_v, and the readers' grant,
        # stay as they are.
        op.execute(view.replace("CREATE VIEW", "CREATE OR REPLACE VIEW", 1))
        return
    # SQLite resolves a view's names when it is used: the views that read runs_v need nothing.
    op.execute("DROP VIEW runs_v")
    op.execute(view)


def upgrade() -> None:
    _replace(op.get_bind().dialect.name, scalar=True)


def downgrade() -> None:
    _replace(op.get_bind().dialect.name, scalar=False)
