"""The WebSocket runner (graphs/transport.py) with a fake socket and fake sessions: no Ray, no models.

Checks what the runner owns whatever the session is: the bound on open
sessions, close codes, recoverable vs fatal errors, idle timeout, messages
that never carry internals, and clean-up.
"""
from __future__ import annotations

import asyncio
import json

import pytest

from graphs.transport import Stats, WebSocketRunner
from speechcore.sessions.events import AudioIn, Configure, EndOfInput, Error, Event, StreamError
from speechcore.settings import get_settings


class FakeSocket:
    def __init__(self, messages: list[dict] | None = None, query: dict | None = None, hold: bool = False):
        self.inbox: asyncio.Queue = asyncio.Queue()
        for m in messages or []:
            self.inbox.put_nowait(m)
        if not hold:
            self.inbox.put_nowait({"type": "websocket.disconnect"})
        self.query_params = query or {}
        self.sent: list = []
        self.closed: tuple[int, str] | None = None

    async def accept(self):
        pass

    async def receive(self):
        return await self.inbox.get()

    async def send_json(self, body):
        self.sent.append(body)

    async def close(self, code, reason=""):
        self.closed = (code, reason)


class EchoSerializer:
    family = "test"

    def parse(self, message):
        data = json.loads(message["text"])
        if data.get("type") == "end":
            return [EndOfInput()]
        if data.get("type") == "config":
            return [Configure(data)]
        if data.get("type") == "bad":
            raise StreamError("unknown_message", "bad message")
        return [AudioIn(data["audio"])]

    def render(self, event: Event):
        if isinstance(event, Error):
            return {"error": event.code, "message": event.message}
        return None


class FakeSession:
    def __init__(self, send, fail_with: Exception | None = None):
        self.send, self.fail_with = send, fail_with
        self.handled: list[Event] = []
        self.finished = self.closed = False

    async def start(self, query):
        if query.get("language") == "xx":
            raise StreamError("unsupported_language", "Language 'xx' is not supported.", 1003)

    async def handle(self, event):
        if self.fail_with is not None:
            raise self.fail_with
        self.handled.append(event)

    async def finish(self):
        self.finished = True

    async def close(self):
        self.closed = True


def text(body: dict) -> dict:
    return {"type": "websocket.receive", "text": json.dumps(body)}


def run(ws: FakeSocket, fail_with: Exception | None = None) -> FakeSession:
    made: list[FakeSession] = []

    def make(send):
        made.append(FakeSession(send, fail_with))
        return made[0]

    asyncio.run(WebSocketRunner(ws, EchoSerializer(), make).run())
    return made[0] if made else None


def test_end_flushes_and_closes_1000_and_bad_messages_are_recoverable():
    ws = FakeSocket([text({"audio": 1}), text({"type": "bad"}), text({"audio": 2}), text({"type": "end"})])
    session = run(ws)
    assert [e.audio for e in session.handled] == [1, 2]
    assert ws.sent == [{"error": "unknown_message", "message": "bad message"}]
    assert ws.closed[0] == 1000 and session.finished and session.closed


def test_invalid_options_close_1003_with_the_reason():
    ws = FakeSocket(query={"language": "xx"})
    session = run(ws)
    assert ws.closed[0] == 1003 and ws.sent[0]["error"] == "unsupported_language" and session.closed


def test_internal_errors_close_1011_without_internals():
    ws = FakeSocket([text({"audio": 1})])
    run(ws, fail_with=RuntimeError("File \"/srv/app/x.py\", line 3, pid 4242"))
    assert ws.closed[0] == 1011
    assert ws.sent == [{"error": "internal_error", "message": "Internal error; the session is closed."}]


def test_idle_clients_are_flushed_then_closed_4408():
    ws = FakeSocket(query={"idle_timeout_s": "1"}, hold=True)
    session = run(ws)
    assert ws.closed[0] == 4408 and ws.sent[0]["error"] == "idle_timeout" and session.finished


def test_oversized_messages_close_1009():
    big = {"type": "websocket.receive", "text": "x" * (get_settings().stream_max_frame_bytes + 1)}
    ws = FakeSocket([big])
    run(ws)
    assert ws.closed[0] == 1009 and ws.sent[0]["error"] == "frame_too_large"


def test_sessions_beyond_the_limit_are_refused_with_1013():
    limit = get_settings().max_live_sessions

    async def scenario():
        held = [FakeSocket(hold=True) for _ in range(limit)]
        tasks = [asyncio.ensure_future(WebSocketRunner(ws, EchoSerializer(), FakeSession).run()) for ws in held]
        await asyncio.sleep(0.01)
        assert Stats.open_sessions() == limit
        extra = FakeSocket()
        await WebSocketRunner(extra, EchoSerializer(), FakeSession).run()
        for ws in held:
            ws.inbox.put_nowait({"type": "websocket.disconnect"})
        await asyncio.gather(*tasks)
        after = FakeSocket([text({"type": "end"})])
        await WebSocketRunner(after, EchoSerializer(), FakeSession).run()
        return extra, after

    extra, after = asyncio.run(scenario())
    assert extra.closed[0] == 1013 and extra.sent[0]["error"] == "too_many_sessions"
    assert str(limit) in extra.sent[0]["message"]
    assert after.closed[0] == 1000                      # a slot is free again once sessions end
    assert Stats.open_sessions() == 0 and Stats.of("test").refused >= 1


@pytest.mark.parametrize("value", ["soon", "-"])
def test_bad_idle_timeout_closes_1003(value):
    ws = FakeSocket(query={"idle_timeout_s": value})
    run(ws)
    assert ws.closed[0] == 1003 and ws.sent[0]["error"] == "invalid_config"


def test_a_handler_cancelled_while_closing_still_frees_its_slot_and_finishes_clean_up():
    """Serve cancels the handler when a client vanishes; if that lands during clean-up, the session
    is still counted out and its clean-up still runs to the end."""
    class SlowClose(FakeSession):
        async def close(self):
            await asyncio.sleep(0.05)
            self.closed = True

    async def scenario():
        made: list[SlowClose] = []
        open_before = Stats.open_sessions()
        runner = WebSocketRunner(FakeSocket([text({"audio": 1})]), EchoSerializer(),
                                 lambda send: made.append(SlowClose(send)) or made[0])
        task = asyncio.ensure_future(runner.run())
        await asyncio.sleep(0.01)               # the disconnect is read; clean-up is under way
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert Stats.open_sessions() == open_before
        await asyncio.sleep(0.1)
        return made[0]

    assert asyncio.run(scenario()).closed
