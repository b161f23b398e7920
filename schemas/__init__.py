"""Contracts between the stages: topics, envelopes, records, ClickHouse DDL.

Nothing in here imports another learnpulse package; every stage imports from here.
"""
