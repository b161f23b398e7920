"""The fault matrix: does every acknowledged statement end up stored exactly once?

``python -m benchmarks.faults`` starts a pipeline of separate processes through the real
``learnpulse`` command (``stack up`` for Kafka and, on the server path, Debian's
clickhouse-server; ``gateway``, ``sink``, ``worker``) in a private ``LEARNPULSE_HOME`` on
free loopback ports, posts statements with unique ids to the gateway over HTTP as an LRS
client does (retrying unanswered and 5xx requests with the same body), injects one fault
per scenario (SIGKILL of a process, a broker or ClickHouse outage, a replay with a new
consumer group), waits until the pipeline has caught up and prints, per scenario and per
table or view (raw and FINAL): sent, acknowledged, stored, lost, doubled and recovery time.

Modules: ``procs`` (one process of the pipeline: start, SIGKILL, restart), ``pipeline``
(the processes of one ClickHouse path, or an operator's existing deployment), ``client``
(the retrying LRS client), ``scenarios`` (the faults), ``tables`` (what is counted, per
table), ``catchup`` (when the pipeline has caught up), ``report`` (the printed table).
"""
