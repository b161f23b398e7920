"""ClickHouse → people: LRS reads, the live view, documented research queries."""
