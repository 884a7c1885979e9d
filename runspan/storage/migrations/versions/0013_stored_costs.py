"""traces.cost_usd stored, with sessions and users_daily (the totals of each conversation and of
each user's day), so that the most expensive traces, conversations and users are read from a
few rows instead of pricing every model run; price_state and triggers on model_prices say when
a price changed, and the views then price live until the writer has priced everything again

Existing databases start unpriced: the views price live, as before, while the writer fills the
new columns and tables in the background (runspan.storage.trace_costs).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from __future__ import annotations

import importlib

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_DAY_NS = 86_400 * 10**9
# traces' columns before this revision, in their order: traces_v lists them, then its own.
_TRACE_COLUMNS = (
    "trace_id",
    "root_run_id",
    "root_span_id",
    "service_name",
    "name",
    "start_ns",
    "end_ns",
    "duration_ms",
    "status",
    "run_count",
    "error_count",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "session_id",
    "user_id",
)
_TOTALS = ("turns", "runs", "errors", "input_tokens", "output_tokens", "total_tokens")
# Every view reads one table, so that each database merges it into the caller's query and
# every index of the table serves it as before. Only the cost depends on the prices: the
# stored one while it is priced at the current prices (a subquery without correlation, which
# both databases run once per statement), else the same priced live from runs_v.
_PRICED = "(SELECT epoch = priced_epoch FROM price_state WHERE id = 1)"
_SAME = {"sqlite": "{0} IS {1}", "postgresql": "{0} IS NOT DISTINCT FROM {1}"}
_TRIGGERED = ("INSERT", "UPDATE", "DELETE")
_TOTAL_COLUMNS = "turns, runs, errors, input_tokens, output_tokens, total_tokens"
_SUMS = """count(*), sum(run_count), sum(error_count), sum(input_tokens), sum(output_tokens),
    sum(total_tokens)"""


def _cost(stored: str, live: str) -> str:
    return f"CASE WHEN {_PRICED} THEN {stored} ELSE {live} END AS cost_usd"


# What each view prices live: a trace, a conversation and user, a user's day; each a query over
# its parameters ({0}, {1}; {same} matches a user, who may be NULL). On PostgreSQL each is a
# function declared cheap: as a subquery in the view, the planner counted it for every row
# (though it runs only while unpriced), and so compiled the query (JIT) for a second each time.
# Only a run that reported tokens has a cost: the others do not look their price up.
_TRACE_COST = """SELECT sum(v.cost_usd) FROM runs_v v WHERE v.trace_id = {0}
    AND (v.input_tokens IS NOT NULL OR v.output_tokens IS NOT NULL)"""
_PER_TRACE = f"sum(({_TRACE_COST.format('l.trace_id')}))"
_LIVE = {  # kind: (PostgreSQL's function, its parameters, the query)
    "trace": ("runspan_trace_cost", ("wanted_trace text",), _TRACE_COST),
    "session": (
        "runspan_session_cost",
        ("wanted_session text", "wanted_user text"),
        f"SELECT {_PER_TRACE} FROM traces l WHERE l.session_id = {{0}} AND {{same}}",
    ),
    "user_day": (
        "runspan_user_day_cost",
        ("wanted_user text", "wanted_day bigint"),
        f"SELECT {_PER_TRACE} FROM traces l WHERE l.user_id = {{0}}"
        f" AND l.start_ns >= {{1}} * {_DAY_NS} AND l.start_ns < ({{1}} + 1) * {_DAY_NS}",
    ),
}


def _live(dialect: str, kind: str, *arguments: str) -> str:
    """The live cost of ``kind``, of the view's ``arguments``."""
    function, _, query = _LIVE[kind]
    if dialect == "postgresql":
        return f"{function}({', '.join(arguments)})"
    return (
        "(" + query.format(*arguments, same=_SAME[dialect].format("l.user_id", arguments[-1])) + ")"
    )


def _create_functions() -> None:
    for function, parameters, query in _LIVE.values():
        names = [parameter.split()[0] for parameter in parameters]
        body = query.format(*names, same=_SAME["postgresql"].format("l.user_id", names[-1]))
        op.execute(
            f"CREATE FUNCTION {function}({', '.join(parameters)}) RETURNS double precision"
            f" LANGUAGE sql STABLE COST 1 SET search_path FROM CURRENT AS $$ {body} $$"
        )


def _views(dialect: str) -> list[str]:
    initial = importlib.import_module("runspan.storage.migrations.versions.0001_initial")
    time, date, day_date = (
        initial._TIME[dialect],
        initial._DATE[dialect],
        initial._DAY_DATE[dialect],
    )
    columns = ", ".join(f"t.{name}" for name in _TRACE_COLUMNS)
    traces_v = f"""CREATE VIEW traces_v AS
SELECT {columns}, {time.format("t.start_ns")} AS start_time,
    {time.format("t.end_ns")} AS end_time, {date.format("t.start_ns")} AS day,
    {_cost("t.cost_usd", _live(dialect, "trace", "t.trace_id"))}
FROM traces t"""
    totals = ", ".join(f"s.{name}" for name in _TOTALS)
    sessions_v = f"""CREATE VIEW sessions_v AS
SELECT s.session_id, s.user_id, s.first_ns, s.last_ns, {time.format("s.first_ns")} AS first_time,
    {time.format("s.last_ns")} AS last_time, {totals},
    {_cost("s.cost_usd", _live(dialect, "session", "s.session_id", "s.user_id"))}
FROM sessions s"""
    totals = ", ".join(f"u.{name}" for name in _TOTALS)
    users_daily_v = f"""CREATE VIEW users_daily_v AS
SELECT u.user_id, u.start_day, {day_date.format("u.start_day")} AS day, {totals},
    {_cost("u.cost_usd", _live(dialect, "user_day", "u.user_id", "u.start_day"))}
FROM users_daily u"""
    return [traces_v, sessions_v, users_daily_v]


def _create_triggers(dialect: str) -> None:
    # Any change to a price may change the cost of any run: the stored costs become unpriced.
    bump = "UPDATE price_state SET epoch = epoch + 1"
    if dialect == "sqlite":
        for event in _TRIGGERED:
            op.execute(
                f"CREATE TRIGGER model_prices_{event.lower()} AFTER {event} ON model_prices"
                f" BEGIN {bump}; END"
            )
        return
    op.execute(
        "CREATE FUNCTION runspan_prices_changed() RETURNS trigger LANGUAGE plpgsql AS"
        f" $$ BEGIN {bump}; RETURN NULL; END $$"
    )
    # Per row: a statement that changes no price (the writer's copy of prices it already has)
    # leaves the stored costs priced.
    op.execute(
        "CREATE TRIGGER model_prices_changed AFTER INSERT OR UPDATE OR DELETE ON model_prices"
        " FOR EACH ROW EXECUTE FUNCTION runspan_prices_changed()"
    )
    op.execute(
        "CREATE TRIGGER model_prices_truncated AFTER TRUNCATE ON model_prices"
        " FOR EACH STATEMENT EXECUTE FUNCTION runspan_prices_changed()"
    )


def _totals_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("turns", sa.BigInteger(), nullable=False),
        sa.Column("runs", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger()),
        sa.Column("output_tokens", sa.BigInteger()),
        sa.Column("total_tokens", sa.BigInteger()),
        sa.Column("cost_usd", sa.Float()),
    ]


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.execute("DROP VIEW IF EXISTS sessions_v")
    op.execute("DROP VIEW IF EXISTS traces_v")
    op.add_column("traces", sa.Column("cost_usd", sa.Float()))
    op.create_index("ix_traces_cost_usd_total_tokens", "traces", ["cost_usd", "total_tokens"])
    op.create_table(
        "sessions",
        sa.Column("session_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text()),
        sa.Column("first_ns", sa.BigInteger(), nullable=False),
        sa.Column("last_ns", sa.BigInteger(), nullable=False),
        *_totals_columns(),
    )
    op.create_index("ix_sessions_session_id", "sessions", ["session_id"])
    op.create_index("ix_sessions_cost_usd_last_ns", "sessions", ["cost_usd", "last_ns"])
    op.create_index("ix_sessions_last_ns", "sessions", ["last_ns"])
    op.create_table(
        "users_daily",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("start_day", sa.BigInteger(), nullable=False),
        *_totals_columns(),
    )
    op.create_index("ix_users_daily_user_id_start_day", "users_daily", ["user_id", "start_day"])
    op.create_index("ix_users_daily_start_day_cost_usd", "users_daily", ["start_day", "cost_usd"])
    op.create_table(
        "price_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column("priced_epoch", sa.BigInteger(), nullable=False),
        sa.Column("repricing_epoch", sa.BigInteger()),
        sa.Column("repriced_to", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_price_state"),
    )
    # The totals of the traces stored before; their costs are left to the writer (pricing every
    # run takes minutes at ten million runs), and until then the views price live.
    op.execute(f"""INSERT INTO sessions (session_id, user_id, first_ns, last_ns, {_TOTAL_COLUMNS})
SELECT session_id, user_id, min(start_ns), max(coalesce(end_ns, start_ns)), {_SUMS}
FROM traces WHERE session_id IS NOT NULL GROUP BY session_id, user_id""")
    op.execute(f"""INSERT INTO users_daily (user_id, start_day, {_TOTAL_COLUMNS})
SELECT user_id, start_ns / {_DAY_NS}, {_SUMS}
FROM traces WHERE user_id IS NOT NULL GROUP BY user_id, start_ns / {_DAY_NS}""")
    # Unpriced until the writer has priced the traces stored before, if there are any.
    op.execute(
        "INSERT INTO price_state (id, epoch, priced_epoch)"
        " SELECT 1, 1, CASE WHEN EXISTS (SELECT 1 FROM traces) THEN 0 ELSE 1 END"
    )
    _create_triggers(dialect)
    if dialect == "postgresql":
        # A trace has a few runs, however many runs there are. PostgreSQL keeps the number of
        # distinct trace ids it last sampled while the table grows, so its estimate of a
        # trace's runs grew with it: past 400,000 runs it chose to walk the index of start
        # times for a trace's root, and one batch of the writer took 96 s. A share of the rows
        # (a tenth) grows with the table.
        op.execute("ALTER TABLE runs ALTER COLUMN trace_id SET (n_distinct = -0.1)")
        _create_functions()
    for statement in _views(dialect):
        op.execute(statement)
    scale = importlib.import_module("runspan.storage.migrations.versions.0008_scale_indexes")
    for table in (
        "traces_v",
        "sessions_v",
        "users_daily_v",
        "sessions",
        "users_daily",
        "price_state",
    ):
        scale.grant_to_readers(table)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for view in ("users_daily_v", "sessions_v", "traces_v"):
        op.execute(f"DROP VIEW IF EXISTS {view}")
    if dialect == "sqlite":
        for event in _TRIGGERED:
            op.execute(f"DROP TRIGGER IF EXISTS model_prices_{event.lower()}")
    else:
        op.execute("DROP TRIGGER IF EXISTS model_prices_changed ON model_prices")
        op.execute("DROP TRIGGER IF EXISTS model_prices_truncated ON model_prices")
        op.execute("DROP FUNCTION IF EXISTS runspan_prices_changed()")
        for function, parameters, _query in _LIVE.values():
            op.execute(f"DROP FUNCTION IF EXISTS {function}({', '.join(parameters)})")
    if dialect == "postgresql":
        op.execute("ALTER TABLE runs ALTER COLUMN trace_id RESET (n_distinct)")
    for table in ("price_state", "users_daily", "sessions"):
        op.drop_table(table)
    op.drop_index("ix_traces_cost_usd_total_tokens", table_name="traces")
    # Not a batch copy: renaming the copy back on SQLite fails while runs_daily_v reads traces.
    # (SQLite drops a column since 3.35.)
    op.execute("ALTER TABLE traces DROP COLUMN cost_usd")
    initial = importlib.import_module("runspan.storage.migrations.versions.0001_initial")
    sessions = importlib.import_module(
        "runspan.storage.migrations.versions.0005_sessions_and_users"
    )
    traces_v = initial._views(dialect)[1]
    assert traces_v.startswith("CREATE VIEW traces_v"), traces_v
    op.execute(traces_v)
    op.execute(sessions._SESSIONS[dialect])
    scale = importlib.import_module("runspan.storage.migrations.versions.0008_scale_indexes")
    for view in ("traces_v", "sessions_v"):
        scale.grant_to_readers(view)
