"""The embedded mode's queue: a kombu transport on one SQLite file, with acknowledgements.

A message stays in the file until the consumer acknowledges it, which the worker does only after
its database commit (``acks_late``). Fetching a message only marks it with its consumer (pid,
process start time, channel): a consumer that dies, even by ``kill -9``, leaves its messages
marked, and the next consumer to poll the file sees that their owner is gone and delivers them
again (the digest skips events it already stored, by event id). A live consumer keeps its
messages however long it holds them, as RabbitMQ does until the connection closes, so a slow
batch is never handed to a second consumer; there is no visibility timeout to tune.

A publish returns once SQLite has committed the message with ``synchronous=FULL`` (the WAL is
fsynced): the intake's 202 stays a promise across a crash of the machine, not only of the
process. Acknowledgements and fetches are committed without the fsync, and acknowledgements are
deleted together at the consumer's next poll (within ~0.1 s): losing some to a crash or a power cut
means a redelivery, which the digest de-duplicates.

Exchange bindings live in the file too, so a process that only publishes (the intake) routes to
the queues the worker declared. Used through ``BROKER_URL=sqlite-queue://`` with the file named
in the transport option ``path`` (``opbeat_server/settings.py``). This module knows nothing of
events or Django: it moves opaque kombu messages.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from queue import Empty

from kombu.transport import TRANSPORT_ALIASES, virtual
from kombu.utils.json import dumps, loads

SCHEME = "sqlite-queue"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS message (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    payload TEXT NOT NULL,
    owner TEXT
);
CREATE INDEX IF NOT EXISTS message_ready ON message (queue, id) WHERE owner IS NULL;
CREATE INDEX IF NOT EXISTS message_owned ON message (owner) WHERE owner IS NOT NULL;
CREATE TABLE IF NOT EXISTS binding (
    exchange TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    pattern TEXT NOT NULL,
    queue TEXT NOT NULL,
    PRIMARY KEY (exchange, routing_key, pattern, queue)
);
"""

# How often a consumer looks for messages held by consumers that are gone: cheap (an index of
# the held messages only), and it bounds how long a crashed worker's messages wait.
_ORPHAN_CHECK_SECONDS = 2.0
# Messages claimed per fetch: one transaction for many, handed out one by one. Bounded by the
# consumer's free prefetch window, so nothing is held beyond what it asked for.
_CLAIM_BATCH = 100


def _process_started(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot), or None if there is none.
    With the pid it names one process for good: a pid reused later has another start time."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except FileNotFoundError:
        return None
    except OSError:
        # No /proc (not Linux): only whether the pid exists.
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "?"
    if fields[0] == b"Z":
        return None
    return fields[19].decode()


_live_channels: set[str] = set()


def _owner_alive(owner: str) -> bool:
    pid_text, started, token = owner.split(":", 2)
    pid = int(pid_text)
    if pid == os.getpid():
        return token in _live_channels
    now = _process_started(pid)
    return now is not None and (now == started or now == "?")


def queue_connect(path: str | Path, *, synchronous: str) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.executescript(_SCHEMA)
    return db


def filesystem_messages_import(*, folder: Path, path: Path) -> int:
    """Move the messages kombu's filesystem transport left in ``folder`` (``*.msg``, the embedded
    queue of earlier versions) into the queue at ``path``; return how many.

    Both transports store the same message dicts, so a file's content is a row's payload. The
    files are removed after the commit: a crash between the two delivers those messages twice,
    which the digest de-duplicates, rather than not at all.
    """
    files = sorted(folder.glob("*.msg"))
    if not files:
        return 0
    # The file name is "<milliseconds>_<uuid>.<queue>.msg": sorted, the publish order to the millisecond.
    rows = [(file.name.partition(".")[2].removesuffix(".msg"), file.read_text()) for file in files]
    db = queue_connect(path, synchronous="FULL")
    try:
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT INTO message (queue, payload) VALUES (?, ?)", rows)
    finally:
        db.close()
    for file in files:
        file.unlink()
    return len(rows)


class QoS(virtual.QoS):
    """Acks delete the message row; a requeue or a closed channel hands the row back."""

    def ack(self, delivery_tag):
        self.channel.message_delete(delivery_tag)
        super().ack(delivery_tag)

    def reject(self, delivery_tag, requeue=False):
        if requeue:
            self.channel.message_release(delivery_tag)
        else:
            self.channel.message_delete(delivery_tag)
        self._quick_ack(delivery_tag)

    def restore_unacked(self):
        # Rows are still in the file: releasing them is the whole restore (the base class would
        # publish copies).
        self._flush()
        self.channel.messages_release_all()
        self._delivered.clear()
        return []


class Channel(virtual.Channel):
    QoS = QoS
    supports_fanout = True

    def __init__(self, connection, **kwargs):
        super().__init__(connection, **kwargs)
        options = self.connection.client.transport_options
        self._path = options["path"]
        self._lock = threading.Lock()
        self._publish_db: sqlite3.Connection | None = None
        self._consume_db: sqlite3.Connection | None = None
        started = _process_started(os.getpid()) or "?"
        self._owner = f"{os.getpid()}:{started}:{uuid.uuid4().hex}"
        _live_channels.add(self._owner.rsplit(":", 1)[1])
        self._claimed: dict[str, list] = {}
        # delivery tag -> row id, for the messages this channel holds.
        self._rows: dict[str, int] = {}
        # Row ids acknowledged and not deleted yet (acks_flush, at the next poll).
        self._acked: list[int] = []
        self._bindings: dict[str, list] = {}
        self._orphans_checked = 0.0

    # --- connections: publishing fsyncs, consuming does not (see the module docstring) ---
    def _db_publish(self) -> sqlite3.Connection:
        if self._publish_db is None:
            self._publish_db = queue_connect(self._path, synchronous="FULL")
        return self._publish_db

    def _db_consume(self) -> sqlite3.Connection:
        if self._consume_db is None:
            self._consume_db = queue_connect(self._path, synchronous="NORMAL")
        return self._consume_db

    # --- publishing ---
    def _put(self, queue, message, **kwargs):
        with self._lock:
            self._db_publish().execute("INSERT INTO message (queue, payload) VALUES (?, ?)", (queue, dumps(message)))

    def _put_fanout(self, exchange, message, routing_key, **kwargs):
        for binding in self.get_table(exchange):
            self._put(binding[2], message)

    def get_table(self, exchange):
        table = self._bindings.get(exchange)
        if table is None:
            with self._lock:
                rows = (
                    self._db_publish()
                    .execute("SELECT routing_key, pattern, queue FROM binding WHERE exchange = ?", (exchange,))
                    .fetchall()
                )
            table = [tuple(row) for row in rows]
            if table:
                # Bindings are only ever added by declarations; an exchange not bound yet is
                # looked up again next time.
                self._bindings[exchange] = table
        return table

    def _queue_bind(self, exchange, routing_key, pattern, queue):
        with self._lock:
            self._db_publish().execute(
                "INSERT OR IGNORE INTO binding (exchange, routing_key, pattern, queue) VALUES (?, ?, ?, ?)",
                (exchange, routing_key or "", pattern or "", queue or ""),
            )
        self._bindings.pop(exchange, None)

    def _delete(self, queue, exchange, routing_key, pattern, *args, **kwargs):
        with self._lock:
            self._db_publish().execute("DELETE FROM binding WHERE exchange = ? AND queue = ?", (exchange, queue))
        self._bindings.pop(exchange, None)

    def _new_queue(self, queue, **kwargs):
        pass

    def _has_queue(self, queue, **kwargs):
        return True

    # --- consuming ---
    def _get(self, queue, timeout=None):
        claimed = self._claimed.get(queue)
        if not claimed:
            claimed = self._claim(queue)
        if not claimed:
            raise Empty()
        row_id, payload = claimed.pop(0)
        message = loads(payload)
        self._rows[message["properties"]["delivery_tag"]] = row_id
        return message

    def _claim(self, queue) -> list:
        if time.monotonic() - self._orphans_checked > _ORPHAN_CHECK_SECONDS:
            self.orphans_release()
        limit = _CLAIM_BATCH
        if self.qos.prefetch_count:
            limit = max(1, min(limit, self.qos.can_consume_max_estimate() or 1))
        with self._lock:
            rows = (
                self._db_consume()
                .execute(
                    "UPDATE message SET owner = ? WHERE id IN "
                    "(SELECT id FROM message WHERE queue = ? AND owner IS NULL ORDER BY id LIMIT ?) "
                    "RETURNING id, payload",
                    (self._owner, queue, limit),
                )
                .fetchall()
            )
        rows.sort()
        self._claimed[queue] = rows
        return rows

    def orphans_release(self) -> int:
        """Hand back the messages held by consumers that no longer exist; return how many."""
        self._orphans_checked = time.monotonic()
        with self._lock:
            db = self._db_consume()
            owners = [row[0] for row in db.execute("SELECT DISTINCT owner FROM message WHERE owner IS NOT NULL")]
            released = 0
            for owner in owners:
                if owner != self._owner and not _owner_alive(owner):
                    released += db.execute("UPDATE message SET owner = NULL WHERE owner = ?", (owner,)).rowcount
        return released

    def message_delete(self, delivery_tag) -> None:
        # Deleted with the others acknowledged since the last poll, in one transaction: the
        # worker acknowledges a batch message by message, and a write transaction each would
        # queue the intake's publishes behind SQLite's lock.
        row_id = self._rows.pop(delivery_tag, None)
        if row_id is not None:
            self._acked.append(row_id)

    def acks_flush(self) -> None:
        if not self._acked:
            return
        with self._lock:
            acked, self._acked = self._acked, []
            db = self._db_consume()
            for start in range(0, len(acked), 500):
                chunk = acked[start : start + 500]
                db.execute(f"DELETE FROM message WHERE id IN ({','.join('?' * len(chunk))})", chunk)

    def drain_events(self, timeout=None, callback=None):
        self.acks_flush()
        return super().drain_events(timeout=timeout, callback=callback)

    def message_release(self, delivery_tag) -> None:
        row_id = self._rows.pop(delivery_tag, None)
        if row_id is not None:
            with self._lock:
                self._db_consume().execute("UPDATE message SET owner = NULL WHERE id = ?", (row_id,))

    def messages_release_all(self) -> None:
        """Everything this channel holds, delivered or not, goes back to the queue (what was
        acknowledged is deleted first)."""
        self.acks_flush()
        self._rows.clear()
        self._claimed.clear()
        if self._consume_db is not None:
            with self._lock:
                self._consume_db.execute("UPDATE message SET owner = NULL WHERE owner = ?", (self._owner,))

    def _size(self, queue):
        with self._lock:
            return (
                self._db_publish()
                .execute("SELECT count(*) FROM message WHERE queue = ? AND owner IS NULL", (queue,))
                .fetchone()[0]
            )

    def _purge(self, queue):
        with self._lock:
            return (
                self._db_publish().execute("DELETE FROM message WHERE queue = ? AND owner IS NULL", (queue,)).rowcount
            )

    def close(self):
        if not self.closed:
            super().close()
            self.messages_release_all()
            _live_channels.discard(self._owner.rsplit(":", 1)[1])
            for db in (self._publish_db, self._consume_db):
                if db is not None:
                    db.close()
            self._publish_db = self._consume_db = None


class Transport(virtual.Transport):
    Channel = Channel
    # An idle worker notices a new message within this many seconds (one indexed SELECT each).
    polling_interval = 0.1
    default_port = 0
    driver_type = "sqlite"
    driver_name = "sqlite3"
    implements = virtual.Transport.implements.extend(
        asynchronous=False,
        exchange_type=frozenset(["direct", "topic", "fanout"]),
    )
    # Bindings are kept in the file; the declared exchanges in memory, shared by this process's
    # connections as in kombu's filesystem transport.
    global_state = virtual.BrokerState()

    def __init__(self, client, **kwargs):
        super().__init__(client, **kwargs)
        self.state = self.global_state

    def driver_version(self):
        return sqlite3.sqlite_version


TRANSPORT_ALIASES.setdefault(SCHEME, "opbeat_server.queue_sqlite:Transport")
