"""Kafka → ClickHouse writers and the ClickHouse engines they write through."""
