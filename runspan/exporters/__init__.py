"""OTLP export to Jaeger and other backends, and replay of stored runs.

The OTLP wiring arrives with the exporters work; nothing here yet.
"""
