"""The LRS gateway: the xAPI Statements API over HTTP, writing to Kafka, reading from ClickHouse.

Entry point: :func:`producers.gateway.app.make_gateway_app` (wired by ``learnpulse gateway``).
"""
