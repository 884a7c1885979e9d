"""Run history in SQL (SQLite by default, PostgreSQL for teams).

The schema, the span writer and the query API arrive with the storage work; nothing here yet.
"""
