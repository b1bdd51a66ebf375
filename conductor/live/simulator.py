"""The simulated attendee app: drives a session with a simulated audience, as an integrator would.

A `Simulation` joins the world (`conductor.live.audience.Audience`, pure) to the session: each step
it hands the audience what its link has received from the attendee websocket, advances the
audience to `now`, and ingests the signals it produced through the in-process ingestion path.
While the database is unavailable the signals are held and sent with the next step, so the
simulation outlives an outage (or a restart of PostgreSQL) instead of exiting.
The audience reacts only to what arrives on the socket: an intervention marked executed in the
database but never sent changes nothing, which is the point (the simulation is ground truth for
the whole loop, delivery included).

`WebsocketLink` is that socket: it connects to `/ws/sessions/{id}/attendees/?key=<attendee key>`
exactly as an attendee client does, keeps what arrives in a queue (a daemon thread reads), and
reconnects with backoff when the server goes away. A refused key (4401/4403) is not retried,
nor is a session that ended (4410).
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, cast
from urllib.parse import quote

from django.db import DatabaseError, close_old_connections
from django.utils import timezone
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import ClientConnection, connect

from conductor.core.errors import ApplicationError
from conductor.live import ingest, participation
from conductor.live.audience import Applied, Audience
from conductor.live.models import LiveSession

logger = logging.getLogger(__name__)

#: Close codes of the attendee socket that no retry can fix (conductor.live.consumers): a key
#: refused, and the session ended.
ENDED_CODE = 4410
REFUSED_CODES = frozenset({4401, 4403, ENDED_CODE})
#: Reconnection waits double from the first to the last, then stay there.
BACKOFF_FIRST_SECONDS = 0.1
BACKOFF_MAX_SECONDS = 5.0


class Link(Protocol):
    """Where an audience's messages come from."""

    def received(self) -> list[dict[str, Any]]:
        """Every message received since the last call, oldest first."""
        ...

    def close(self) -> None: ...


def attendee_url(base: str, session: LiveSession) -> str:
    """The attendee websocket URL of a session on a server at `base` (ws://host:port)."""
    return (
        f"{base.rstrip('/')}/ws/sessions/{session.pk}/attendees/"
        f"?key={quote(session.attendee_key, safe='')}"
    )


def local_base_url(host: str, port: int) -> str:
    """The ws:// base URL to reach a server listening on host:port from this machine."""
    # A wildcard address listens everywhere but cannot be connected to: use the loopback.
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # noqa: S104  # nosec B104
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"ws://{host}:{port}"


class WebsocketLink:
    """An attendee socket read by a daemon thread; `received()` drains what arrived."""

    def __init__(self, url: str, *, open_timeout: float = 5.0) -> None:
        self.url = url
        self.open_timeout = open_timeout
        #: How many times the socket has been opened (reconnections included).
        self.connections = 0
        #: The close code if the server refused the key; the link then stops.
        self.refused: int | None = None
        self._messages: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self._connected = threading.Event()
        self._closing = threading.Event()
        self._socket: ClientConnection | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="attendee-link", daemon=True)
        self._thread.start()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """Wait until the socket is open. Returns whether it is."""
        return self._connected.wait(timeout)

    def received(self) -> list[dict[str, Any]]:
        messages = []
        while True:
            try:
                messages.append(self._messages.get_nowait())
            except queue.Empty:
                return messages

    def close(self) -> None:
        self._closing.set()
        with self._lock:
            if self._socket is not None:
                self._socket.close()
        self._thread.join(timeout=self.open_timeout + 1)

    def _run(self) -> None:
        backoff = BACKOFF_FIRST_SECONDS
        while not self._closing.is_set():
            try:
                with connect(self.url, open_timeout=self.open_timeout) as socket:
                    with self._lock:
                        if self._closing.is_set():
                            return
                        self._socket = socket
                    self.connections += 1
                    self._connected.set()
                    backoff = BACKOFF_FIRST_SECONDS
                    self._read(socket)
                if socket.close_code in REFUSED_CODES:
                    self._refuse(socket.close_code)
                    return
            except ConnectionClosed as closed:
                if closed.rcvd is not None and closed.rcvd.code in REFUSED_CODES:
                    self._refuse(closed.rcvd.code)
                    return
            except InvalidURI:
                logger.exception("cannot connect the attendee socket")
                return
            except (OSError, InvalidHandshake, TimeoutError) as error:
                logger.debug("attendee socket unavailable: %s", error)
            finally:
                self._connected.clear()
                with self._lock:
                    self._socket = None
            self._closing.wait(backoff)
            backoff = min(BACKOFF_MAX_SECONDS, backoff * 2)

    def _refuse(self, code: int) -> None:
        self.refused = code
        if code == ENDED_CODE:  # the end of the session, not a fault
            logger.info("attendee socket closed, the session ended: %s", self.url.split("?")[0])
        else:
            logger.warning("attendee socket refused with %s: %s", code, self.url.split("?")[0])

    def _read(self, socket: ClientConnection) -> None:
        for raw in socket:
            try:
                message = json.loads(raw)
            except ValueError:
                logger.warning("attendee socket sent something that is not JSON: %.80r", raw)
                continue
            if isinstance(message, dict):
                self._messages.put(message)


@dataclass
class Simulation:
    """A session driven by a simulated audience. `link` None: the audience receives nothing."""

    session: LiveSession
    audience: Audience
    link: Link | None = None
    #: Steps taken so far.
    tick: int = 0
    #: Messages the link delivered so far (repeats included).
    messages: int = 0
    #: Signals ingested so far.
    signals: int = 0
    #: Signals produced while the database was unavailable, sent with the next step.
    held: list[dict[str, Any]] = field(default_factory=list)
    #: Signals dropped because more were held than one batch takes (a long outage).
    lost: int = 0
    #: Prefix of this simulation's signal ids, unique to it.
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    #: The session ended: its ingestion said so (409 session_ended); nothing was stored.
    ended: bool = False

    def step(self, now: datetime | None = None) -> str:
        """Apply what was received, advance the audience, ingest its signals. Returns one log
        line."""
        now = now or timezone.now()
        received: list[Applied] = []
        if self.link is not None:
            for message in self.link.received():
                self.messages += 1
                applied = self.audience.receive(message, now)
                if applied is not None:
                    received.append(applied)
        # Signals a database outage kept back go first; their ids make a repeat harmless.
        signals = [*self.held, *self._tagged(self.audience.step(now))]
        self.held = []
        outage = ""
        try:
            result = (
                # The audience builds exactly the SignalIn shape; it is a plain dict only because
                # audience.py imports nothing of ours.
                participation.app_signals_ingest(
                    session=self.session, batch=cast("ingest.SignalBatch", {"signals": signals})
                )
                if signals
                else ingest.IngestResult(0, 0)
            )
        except (ApplicationError, DatabaseError) as error:
            if isinstance(error, ApplicationError) and error.code == "session_ended":
                self.ended = True
                return f"tick {self.tick + 1:4d}  the session has ended"
            if isinstance(error, ApplicationError) and error.status_code != 503:
                raise
            result = ingest.IngestResult(0, 0)
            self.held = signals[-ingest.MAX_BATCH :]
            self.lost += len(signals) - len(self.held)
            outage = f"  database unavailable: {len(self.held)} signals held for the next tick"
            # Outside a request nobody closes a broken connection: the next tick reconnects.
            with contextlib.suppress(DatabaseError):
                close_old_connections()
        self.signals += result.accepted
        self.tick += 1
        audience = self.audience
        line = (
            f"tick {self.tick:4d}  present {audience.present:4d}  level {audience.level:.2f}  "
            f"{audience.situation:<15}  signals {result.accepted:4d}{outage}"
        )
        if audience.dropped:
            line += f"  << {audience.dropped}"
        for applied in received:
            line += f"  received {applied.type} ({applied.effect:+.2f})"
        return line

    def _tagged(self, signals: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # The audience numbers its signals from 1: a simulation started again on the same
        # session (the supervisor restarts it) would repeat the ids of the one before, and its
        # signals would be dropped as duplicates.
        for signal in signals:
            signal["id"] = f"{self.run}-{signal['id']}"
        return signals

    def close(self) -> None:
        if self.link is not None:
            self.link.close()
