"""Closing a store while a worker thread is inside a transaction.

The gateway's index calls run in worker threads; on shutdown the app closed the SQLite
connection while one of them (freeing a previous run's reservations) was still inside a
transaction, and the process crashed (a segmentation fault in the gateway's unit tests).
"""

from __future__ import annotations

import threading

from producers.lrsstore.database import Database


def test_close_waits_for_the_transaction_in_flight(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    db.ensure(["CREATE TABLE IF NOT EXISTS t (x INTEGER)"])
    inside, go_on = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def transaction() -> None:
        try:
            with db.transaction() as cur:
                cur.execute("INSERT INTO t VALUES (1)")
                inside.set()
                go_on.wait(30)
                cur.execute("INSERT INTO t VALUES (2)")
        except BaseException as err:  # noqa: BLE001 - reported below
            failures.append(err)

    worker = threading.Thread(target=transaction)
    worker.start()
    assert inside.wait(30)
    closer = threading.Thread(target=db.close)
    closer.start()
    # Without the lock, close() is done by now and the transaction's next statement fails
    # on a closed connection (or crashes). With it, close() waits for the transaction.
    closer.join(1.0)
    go_on.set()
    worker.join(30)
    closer.join(30)
    assert not worker.is_alive() and not closer.is_alive()
    assert failures == []
