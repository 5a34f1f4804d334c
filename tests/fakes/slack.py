"""A fake Slack (Web API, Socket Mode and response_url hooks) on one loopback aiohttp server.

Integration tests point the real slack_sdk / slack_bolt clients at it, so the bot is exercised
over real HTTP and WebSocket connections instead of through mocks::

    async with FakeSlack(bot_token="xoxb-test", app_token="xapp-test") as slack:
        client = AsyncWebClient(token="xoxb-test", base_url=slack.api_url)
        ...
        call = await slack.wait_for("chat.postMessage", lambda c: "ok" in c.params["text"])

Everything the server sees is recorded (``calls``, ``acks``, ``violations``, ``warnings``)
and the message store (``messages``) reflects posts, updates and response_url replacements,
so tests assert on the final state of what users would see.

The server binds 127.0.0.1 on an ephemeral port; readiness is ``await start()`` (or entering
the context manager), never a sleep. Every wait helper takes a bounded timeout.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

from aiohttp import WSCloseCode, WSMsgType, web

JsonDict = dict[str, Any]
_T = TypeVar("_T")

# Identity of the fake workspace. Payload builders in tests.fakes.signing use the same values
# so that Bolt's authorization (auth.test) and event routing see one consistent workspace.
TEAM_ID = "T0FAKE"
TEAM_DOMAIN = "fake-workspace"
APP_ID = "A1"
BOT_USER_ID = "U0BOT"
BOT_ID = "B0BOT"
BOT_NAME = "clusterbot"

# Block Kit limits as documented by Slack (messages, not modals).
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_SECTION_FIELD = 2000
MAX_SECTION_FIELDS = 10
MAX_HEADER_TEXT = 150
MAX_CONTEXT_ELEMENTS = 10
MAX_ACTIONS_ELEMENTS = 25
MAX_BLOCK_ID = 255
MAX_ACTION_ID = 255
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_MESSAGE_TEXT = 40_000
KNOWN_BLOCK_TYPES = frozenset(
    {
        "actions",
        "context",
        "context_actions",
        "divider",
        "file",
        "header",
        "image",
        "input",
        "markdown",
        "rich_text",
        "section",
        "table",
        "video",
    }
)

# Slack lets a response_url be used 5 times (within 30 minutes).
RESPONSE_URL_MAX_USES = 5
# Slack expects a Socket Mode envelope to be acknowledged within 3 seconds.
ACK_DEADLINE_SECONDS = 3.0
# Bounds the server-side WebSocket close handshake so teardown cannot hang.
_WS_CLOSE_TIMEOUT = 2.0
_APP_TOKEN_METHODS = frozenset({"apps.connections.open"})


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Call:
    """One HTTP request the fake answered (Web API method or ``"response_url"``)."""

    method: str
    params: JsonDict
    headers: dict[str, str]
    status: int
    response: JsonDict
    at: float  # time.monotonic() when answered

    @property
    def ok(self) -> bool:
        return self.status == 200 and bool(self.response.get("ok"))


@dataclass(frozen=True)
class Violation:
    """Message content Slack would have refused (the request was answered with an error)."""

    method: str
    error: str
    problems: list[str]
    params: JsonDict


@dataclass(frozen=True)
class SlackWarning:
    """Accepted content Slack flags (e.g. blocks without a top-level ``text`` fallback)."""

    method: str
    kind: str
    detail: str


@dataclass
class Message:
    """A channel message as it currently stands (after updates)."""

    channel: str
    ts: str
    text: str
    blocks: list[JsonDict] = field(default_factory=list)
    thread_ts: str | None = None
    user: str = BOT_USER_ID
    bot_id: str | None = BOT_ID
    edits: int = 0

    def to_api(self) -> JsonDict:
        """The message object as the Web API returns it."""
        data: JsonDict = {"type": "message", "text": self.text, "user": self.user}
        data.update(ts=self.ts, team=TEAM_ID)
        if self.bot_id is not None:
            data.update(bot_id=self.bot_id, app_id=APP_ID)
        if self.blocks:
            data["blocks"] = self.blocks
        if self.thread_ts is not None:
            data["thread_ts"] = self.thread_ts
        if self.edits:
            data["edited"] = {"user": self.user, "ts": self.ts}
        return data


@dataclass
class Ephemeral:
    """An ephemeral message (chat.postEphemeral or a response_url reply that is not in_channel)."""

    channel: str | None
    user: str | None
    ts: str
    text: str
    blocks: list[JsonDict] = field(default_factory=list)
    via: str = "chat.postEphemeral"


@dataclass(frozen=True)
class Envelope:
    """A Socket Mode envelope the fake sent to the client."""

    envelope_id: str
    type: str
    payload: JsonDict
    connection: int
    sent_at: float


@dataclass(frozen=True)
class Ack:
    """The client's acknowledgement of an envelope."""

    envelope_id: str
    payload: JsonDict | None
    elapsed: float  # seconds from sending the envelope to receiving the ack
    raw: JsonDict
    connection: int  # the number of the connection the ack came back on

    @property
    def late(self) -> bool:
        return self.elapsed > ACK_DEADLINE_SECONDS


@dataclass
class SocketConnection:
    """One accepted Socket Mode WebSocket."""

    number: int  # 1 for the first connection, 2 after the first reconnect, ...
    ws: web.WebSocketResponse
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def open(self) -> bool:
        return not self.closed.is_set() and not self.ws.closed


@dataclass
class _Fault:
    status: int
    error: str
    retry_after: int | str | None = None  # str: what a proxy may send (an HTTP date, garbage)
    passes: int = 0  # calls let through before this fault applies


@dataclass
class _Hook:
    """State behind one response_url: where replies go and what replace_original replaces."""

    channel: str | None
    user: str | None
    message: tuple[str, str] | None
    ephemeral: Ephemeral | None = None
    uses: int = 0


@dataclass
class _Reply:
    status: int
    body: JsonDict
    headers: dict[str, str] = field(default_factory=dict)
    page: tuple[str, str] | None = None  # (content type, text) sent instead of the JSON body


class _ApiError(Exception):
    """A Slack ``{"ok": false, "error": ...}`` answer."""

    def __init__(self, error: str, status: int = 200, extra: JsonDict | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.extra = extra or {}


# --------------------------------------------------------------------------- Block Kit checks


def block_problems(blocks: list[Any]) -> list[str]:
    """Problems Slack would report for these message blocks, in Slack's message format."""
    problems: list[str] = []
    if len(blocks) > MAX_BLOCKS:
        problems.append(f"no more than {MAX_BLOCKS} items allowed [json-pointer:/blocks]")
    seen_block_ids: set[str] = set()
    for index, block in enumerate(blocks):
        problems.extend(_block_problems(f"/blocks/{index}", block, seen_block_ids))
    return problems


def _block_problems(path: str, block: Any, seen_block_ids: set[str]) -> list[str]:
    if not isinstance(block, dict):
        return [f"must be an object [json-pointer:{path}]"]
    kind = block.get("type")
    if kind not in KNOWN_BLOCK_TYPES:
        return [f"unsupported block type {kind!r} [json-pointer:{path}/type]"]
    problems = _block_id_problems(path, block, seen_block_ids)
    checker = _BLOCK_CHECKERS.get(kind)
    if checker is not None:
        problems.extend(checker(path, block))
    return problems


def _block_id_problems(path: str, block: JsonDict, seen: set[str]) -> list[str]:
    block_id = block.get("block_id")
    if block_id is None:
        return []
    if not isinstance(block_id, str) or len(block_id) > MAX_BLOCK_ID:
        return [f"must be less than {MAX_BLOCK_ID + 1} characters [json-pointer:{path}/block_id]"]
    if block_id in seen:
        return [f"duplicate block_id {block_id!r} [json-pointer:{path}/block_id]"]
    seen.add(block_id)
    return []


def _section_problems(path: str, block: JsonDict) -> list[str]:
    text, fields = block.get("text"), block.get("fields")
    if text is None and not fields:
        return [f"must provide either text or fields [json-pointer:{path}]"]
    problems: list[str] = []
    if text is not None:
        problems.extend(_text_problems(f"{path}/text", text, MAX_SECTION_TEXT))
    if fields is not None:
        problems.extend(_fields_problems(f"{path}/fields", fields))
    accessory = block.get("accessory")
    if accessory is not None:
        problems.extend(_element_problems(f"{path}/accessory", accessory, set()))
    return problems


def _fields_problems(path: str, fields: Any) -> list[str]:
    if not isinstance(fields, list):
        return [f"must be an array [json-pointer:{path}]"]
    problems: list[str] = []
    if len(fields) > MAX_SECTION_FIELDS:
        problems.append(f"no more than {MAX_SECTION_FIELDS} items allowed [json-pointer:{path}]")
    for index, item in enumerate(fields):
        problems.extend(_text_problems(f"{path}/{index}", item, MAX_SECTION_FIELD))
    return problems


def _header_problems(path: str, block: JsonDict) -> list[str]:
    return _text_problems(f"{path}/text", block.get("text"), MAX_HEADER_TEXT, plain_only=True)


def _context_problems(path: str, block: JsonDict) -> list[str]:
    elements = block.get("elements")
    problems = _array_size_problems(f"{path}/elements", elements, MAX_CONTEXT_ELEMENTS)
    if problems or not isinstance(elements, list):
        return problems
    for index, element in enumerate(elements):
        if isinstance(element, dict) and element.get("type") == "image":
            continue
        problems.extend(_text_problems(f"{path}/elements/{index}", element, None))
    return problems


def _actions_problems(path: str, block: JsonDict) -> list[str]:
    elements = block.get("elements")
    problems = _array_size_problems(f"{path}/elements", elements, MAX_ACTIONS_ELEMENTS)
    if problems or not isinstance(elements, list):
        return problems
    action_ids: set[str] = set()  # action_id must be unique within its block
    for index, element in enumerate(elements):
        problems.extend(_element_problems(f"{path}/elements/{index}", element, action_ids))
    return problems


def _array_size_problems(path: str, items: Any, maximum: int) -> list[str]:
    if not isinstance(items, list) or not items:
        return [f"must provide a non-empty array [json-pointer:{path}]"]
    if len(items) > maximum:
        return [f"no more than {maximum} items allowed [json-pointer:{path}]"]
    return []


def _element_problems(path: str, element: Any, action_ids: set[str]) -> list[str]:
    if not isinstance(element, dict):
        return [f"must be an object [json-pointer:{path}]"]
    problems: list[str] = []
    action_id = element.get("action_id")
    if isinstance(action_id, str):
        if len(action_id) > MAX_ACTION_ID:
            problems.append(
                f"must be less than {MAX_ACTION_ID + 1} characters [json-pointer:{path}/action_id]"
            )
        if action_id in action_ids:
            problems.append(f"duplicate action_id {action_id!r} [json-pointer:{path}/action_id]")
        action_ids.add(action_id)
    if element.get("type") == "button":
        problems.extend(_button_problems(path, element))
    return problems


def _button_problems(path: str, button: JsonDict) -> list[str]:
    problems = _text_problems(f"{path}/text", button.get("text"), MAX_BUTTON_TEXT, plain_only=True)
    value = button.get("value")
    if isinstance(value, str) and len(value) > MAX_BUTTON_VALUE:
        problems.append(f"must be less than {MAX_BUTTON_VALUE + 1} characters [json-pointer:{path}/value]")
    return problems


def _text_problems(path: str, obj: Any, max_len: int | None, *, plain_only: bool = False) -> list[str]:
    if not isinstance(obj, dict):
        return [f"must be a text object [json-pointer:{path}]"]
    allowed = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
    if obj.get("type") not in allowed:
        return [f"must be one of {list(allowed)} [json-pointer:{path}/type]"]
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        return [f"must be more than 0 characters [json-pointer:{path}/text]"]
    if max_len is not None and len(text) > max_len:
        return [f"must be less than {max_len + 1} characters [json-pointer:{path}/text]"]
    return []


_BLOCK_CHECKERS: dict[str, Callable[[str, JsonDict], list[str]]] = {
    "section": _section_problems,
    "header": _header_problems,
    "context": _context_problems,
    "actions": _actions_problems,
}


def _parse_blocks(raw: Any) -> list[Any] | None:
    """Blocks arrive as a list (JSON body) or as a JSON string (form body)."""
    if raw is None or raw == "":
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            raise _ApiError("invalid_blocks_format") from None
    if not isinstance(raw, list):
        raise _ApiError("invalid_blocks_format")
    return raw


def _message_content(params: Mapping[str, Any]) -> tuple[str | None, list[Any] | None]:
    """Parse ``text``/``blocks`` and refuse what Slack refuses."""
    text = params.get("text")
    text = None if text is None else str(text)
    if text is not None and len(text) > MAX_MESSAGE_TEXT:
        raise _ApiError("msg_too_long")
    blocks = _parse_blocks(params.get("blocks"))
    problems = block_problems(blocks) if blocks is not None else []
    if problems:
        messages = [f"[ERROR] {problem}" for problem in problems]
        extra = {"errors": problems, "response_metadata": {"messages": messages}}
        raise _ApiError("invalid_blocks", extra=extra)
    return text, blocks


# --------------------------------------------------------------------------- small helpers


class _TsClock:
    """Monotonically increasing, deterministic message timestamps ("1700000000.000100", ...)."""

    def __init__(self, start_us: int = 1_700_000_000_000_000, step_us: int = 100) -> None:
        self._step = step_us
        self._next = start_us + step_us

    def next(self) -> str:
        value, self._next = self._next, self._next + self._step
        return f"{value // 1_000_000}.{value % 1_000_000:06d}"


def _required(params: Mapping[str, Any], name: str, error: str) -> str:
    value = params.get(name)
    if value is None or value == "":
        raise _ApiError(error)
    return str(value)


def _optional(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    return None if value is None or value == "" else str(value)


def _truthy(value: Any) -> bool:
    """Form bodies carry booleans as strings."""
    return value is True or (isinstance(value, str) and value.lower() in ("true", "1"))


def _bearer_token(headers: Mapping[str, str], params: Mapping[str, Any]) -> str | None:
    auth = headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        return auth.removeprefix("Bearer ").strip() or None
    token = params.get("token")  # Slack still accepts the token as a form/query parameter
    return str(token) if token else None


async def _read_params(request: web.Request) -> JsonDict:
    """Merge query string and body (JSON or form), as Slack does."""
    params: JsonDict = dict(request.query)
    if not request.body_exists:
        return params
    if request.content_type == "application/json":
        try:
            body = await request.json()
        except json.JSONDecodeError:
            raise _ApiError("invalid_json") from None
        if not isinstance(body, dict):
            raise _ApiError("invalid_json")
        params.update(body)
    else:
        form = await request.post()
        params.update({key: value for key, value in form.items() if isinstance(value, str)})
    return params


def _json_reply(reply: _Reply) -> web.Response:
    if reply.page is not None:
        content_type, text = reply.page
        return web.Response(status=reply.status, text=text, content_type=content_type, headers=reply.headers)
    return web.json_response(reply.body, status=reply.status, headers=reply.headers)


def _pop_fault(faults: dict[str, deque[_Fault]], method: str) -> _Fault | None:
    queue = faults.get(method)
    if queue and queue[0].passes > 0:
        queue[0].passes -= 1
        return None
    return queue.popleft() if queue else None


# --------------------------------------------------------------------------- the fake


class FakeSlack:
    """Slack Web API + Socket Mode + response_url hooks on ``127.0.0.1:<ephemeral port>``."""

    def __init__(self, *, bot_token: str = "xoxb-test", app_token: str = "xapp-test") -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        # What the server saw and did; tests assert on these.
        self.calls: list[Call] = []
        self.violations: list[Violation] = []
        self.warnings: list[SlackWarning] = []
        self.messages: dict[tuple[str, str], Message] = {}
        self.ephemerals: list[Ephemeral] = []
        self.envelopes: list[Envelope] = []
        self.acks: dict[str, Ack] = {}
        self.connections: list[SocketConnection] = []
        # Workspace data tests may seed.
        self.usergroup_members: dict[str, list[str]] = {}
        self.users: dict[str, JsonDict] = {}
        self._ts = _TsClock()
        self._rate_limits: dict[str, deque[_Fault]] = {}
        self._failures: dict[str, deque[_Fault]] = {}
        self._down_status: int | None = None
        self._down_page: tuple[str, str] | None = None
        self._hooks: dict[str, _Hook] = {}
        self._tickets: set[str] = set()
        self._connection_numbers = itertools.count(1)
        self._sends = itertools.count()  # spreads envelopes over the open connections
        self._trigger_numbers = itertools.count(1)
        # One condition for every state change; waiters re-check their own predicate.
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._handlers: dict[str, Callable[[JsonDict], JsonDict]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "usergroups.users.list": self._usergroups_users_list,
            "users.info": self._users_info,
            "conversations.replies": self._conversations_replies,
            "apps.connections.open": self._apps_connections_open,
        }

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Bind 127.0.0.1:0 and serve; returns once the port accepts connections."""
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/hooks/{kind}/{hook_id}", self._handle_response_url)
        app.router.add_get("/socket-mode/link/", self._handle_socket)
        # shutdown_timeout bounds teardown if a client keeps a request open.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=_WS_CLOSE_TIMEOUT)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(self._runner.addresses[0][1])

    async def close(self) -> None:
        """Close Socket Mode connections (1001 going away) and stop the server."""
        for connection in self.connections:
            if connection.open:
                await connection.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeSlack is not started")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """Pass as ``AsyncWebClient(base_url=...)``."""
        return f"{self.base_url}/api/"

    # ------------------------------------------------------------------ fault injection

    def rate_limit(self, method: str, *, times: int = 1, retry_after: int | str = 1) -> None:
        """The next ``times`` calls of ``method`` get HTTP 429 with a Retry-After header."""
        queue = self._rate_limits.setdefault(method, deque())
        queue.extend(_Fault(429, "ratelimited", retry_after) for _ in range(times))

    def fail(self, method: str, *, error: str, times: int = 1, after: int = 0) -> None:
        """The next ``times`` authorized calls of ``method`` answer ``{"ok": false, "error"}``.

        With ``after``, that many calls succeed first (e.g. a progress post, then its retry fails).
        """
        queue = self._failures.setdefault(method, deque())
        queue.extend(_Fault(200, error, passes=after if i == 0 else 0) for i in range(times))

    def set_down(self, down: bool, *, status: int = 503, page: str | None = None,
                 content_type: str = "text/plain") -> None:
        """While down, every HTTP request (API, response_url, WebSocket upgrade) gets ``status``.

        With ``page``, Web API calls get that body instead of Slack's JSON, the way a proxy or
        load balancer in front of Slack answers (Envoy: text/plain "upstream connect error ...").
        """
        self._down_status = status if down else None
        self._down_page = (content_type, page) if down and page is not None else None

    # ------------------------------------------------------------------ seeding and lookups

    def response_url(
        self,
        *,
        channel: str | None = None,
        user: str | None = None,
        message_ts: str | None = None,
        kind: Literal["commands", "actions"] = "commands",
    ) -> str:
        """Allocate a response_url on this server.

        ``channel`` is where in_channel replies land; ``message_ts`` is the message that
        ``replace_original``/``delete_original`` act on (the clicked message, for actions).
        """
        hook_id = uuid.uuid4().hex
        message = (channel, message_ts) if channel is not None and message_ts is not None else None
        self._hooks[hook_id] = _Hook(channel=channel, user=user, message=message)
        return f"{self.base_url}/hooks/{kind}/{hook_id}"

    def trigger_id(self) -> str:
        return f"{next(self._trigger_numbers)}.{TEAM_ID}.{uuid.uuid4().hex[:20]}"

    def next_ts(self) -> str:
        return self._ts.next()

    def add_message(
        self, channel: str, text: str, *, user: str = "U0USER", thread_ts: str | None = None
    ) -> Message:
        """Seed a message written by a human (e.g. the post a thread reply hangs off)."""
        message = Message(channel, self.next_ts(), text, thread_ts=thread_ts, user=user, bot_id=None)
        self.messages[(channel, message.ts)] = message
        return message

    def thread(self, channel: str, thread_ts: str) -> list[Message]:
        """Parent followed by its replies, oldest first."""
        in_thread = [
            message
            for (chan, ts), message in self.messages.items()
            if chan == channel and (ts == thread_ts or message.thread_ts == thread_ts)
        ]
        return sorted(in_thread, key=lambda message: float(message.ts))

    # ------------------------------------------------------------------ waiting

    async def wait_for(
        self,
        method: str,
        predicate: Callable[[Call], bool] | None = None,
        *,
        timeout: float = 5.0,
        since: int = 0,
    ) -> Call:
        """First call of ``method`` (from index ``since`` of ``calls``) matching ``predicate``."""

        def probe() -> Call | None:
            for call in self.calls[since:]:
                if call.method == method and (predicate is None or predicate(call)):
                    return call
            return None

        return await self._wait_until(probe, timeout, f"a matching {method} call")

    async def socket_connected(self, timeout: float = 5.0) -> SocketConnection:
        """The newest open Socket Mode connection, waiting for one if there is none."""
        return await self._wait_until(self._open_connection, timeout, "a Socket Mode connection")

    async def socket_connections(self, count: int, timeout: float = 5.0) -> list[SocketConnection]:
        """The open Socket Mode connections, oldest first, once there are at least ``count``."""
        def probe() -> list[SocketConnection] | None:
            open_connections = self._open_connections()
            return open_connections if len(open_connections) >= count else None

        return await self._wait_until(probe, timeout, f"{count} open Socket Mode connections")

    async def wait_ack(self, envelope_id: str, timeout: float = 5.0) -> Ack:
        return await self._wait_until(
            lambda: self.acks.get(envelope_id), timeout, f"the ack of envelope {envelope_id}"
        )

    async def _wait_until(self, probe: Callable[[], _T | None], timeout: float, what: str) -> _T:
        async with self._changed:
            try:
                async with asyncio.timeout(timeout):
                    while (found := probe()) is None:
                        await self._changed.wait()
            except TimeoutError:
                seen = [call.method for call in self.calls]
                raise TimeoutError(f"no {what} within {timeout}s (calls so far: {seen})") from None
        return found

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # ------------------------------------------------------------------ Socket Mode (test side)

    async def socket_send(
        self,
        type: Literal["slash_commands", "interactive", "events_api"],  # Slack's field name
        payload: JsonDict,
        *,
        accepts_response_payload: bool | None = None,
        retry_attempt: int = 0,
        retry_reason: str = "",
        timeout: float = 5.0,
        connection: SocketConnection | None = None,
    ) -> str:
        """Send an envelope; returns its envelope_id.

        Like Slack, which spreads an app's events across its open connections (one per replica),
        each envelope goes to the next open connection in turn, unless ``connection`` names one.
        """
        if connection is None:
            await self.socket_connected(timeout)
            open_connections = self._open_connections()
            connection = open_connections[next(self._sends) % len(open_connections)]
        if accepts_response_payload is None:
            accepts_response_payload = _accepts_response_payload(type, payload)
        envelope_id = str(uuid.uuid4())
        message = {
            "envelope_id": envelope_id,
            "type": type,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
            "retry_attempt": retry_attempt,
            "retry_reason": retry_reason,
        }
        sent_at = time.monotonic()
        self.envelopes.append(Envelope(envelope_id, type, payload, connection.number, sent_at))
        await connection.ws.send_json(message)
        return envelope_id

    async def socket_disconnect(
        self, reason: str | None = "refresh_requested", *, timeout: float = 5.0
    ) -> None:
        """Make the client reconnect, the way Slack rotates connections.

        Sends ``{"type": "disconnect", "reason": ...}`` and gives the client until ``timeout``
        to close the socket itself (slack_sdk does, after opening a new URL); then closes it.
        ``reason=None`` drops the connection without notice (network failure).
        """
        connection = self._open_connection()
        if connection is None:
            return
        if reason is not None:
            notice = {"type": "disconnect", "reason": reason, "debug_info": {"host": "fake-slack"}}
            await connection.ws.send_json(notice)
            try:
                async with asyncio.timeout(timeout):
                    await connection.closed.wait()
            except TimeoutError:
                pass  # the client ignored the notice; Slack closes the socket anyway
        if not connection.closed.is_set():
            await connection.ws.close(code=WSCloseCode.GOING_AWAY, message=b"disconnect")
            async with asyncio.timeout(timeout):
                await connection.closed.wait()

    def _open_connection(self) -> SocketConnection | None:
        open_connections = self._open_connections()
        return open_connections[-1] if open_connections else None

    def _open_connections(self) -> list[SocketConnection]:
        return [connection for connection in self.connections if connection.open]

    # ------------------------------------------------------------------ HTTP handlers

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        try:
            params = await _read_params(request)
            reply = self._dispatch(method, params, request.headers)
        except _ApiError as exc:
            params, reply = {}, _Reply(exc.status, {"ok": False, "error": exc.error})
        await self._record(method, params, request, reply)
        return _json_reply(reply)

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        try:
            params = await _read_params(request)
            reply = self._dispatch_hook(request.match_info["hook_id"], params)
        except _ApiError as exc:
            params, reply = {}, _Reply(exc.status, {"ok": False, "error": exc.error})
        await self._record("response_url", params, request, reply)
        return _json_reply(reply)

    async def _record(self, method: str, params: JsonDict, request: web.Request, reply: _Reply) -> None:
        headers = dict(request.headers)
        self.calls.append(Call(method, params, headers, reply.status, reply.body, time.monotonic()))
        await self._notify()

    def _dispatch(self, method: str, params: JsonDict, headers: Mapping[str, str]) -> _Reply:
        """Outage, then unknown method, then rate limit, then auth, then injected failure."""
        if self._down_status is not None:
            return _Reply(self._down_status, {"ok": False, "error": "service_unavailable"},
                          page=self._down_page)
        handler = self._handlers.get(method)
        if handler is None:
            return _Reply(404, {"ok": False, "error": "unknown_method", "req_method": method})
        limited = _pop_fault(self._rate_limits, method)
        if limited is not None:
            return _rate_limited_reply(limited)
        try:
            self._authorize(method, _bearer_token(headers, params))
            failure = _pop_fault(self._failures, method)
            if failure is not None:
                raise _ApiError(failure.error, failure.status)
            return _Reply(200, {"ok": True, **handler(params)})
        except _ApiError as exc:
            return _Reply(exc.status, {"ok": False, "error": exc.error, **exc.extra})

    def _authorize(self, method: str, token: str | None) -> None:
        expected = self.app_token if method in _APP_TOKEN_METHODS else self.bot_token
        if token is None:
            raise _ApiError("not_authed")
        if token == expected:
            return
        if token in (self.bot_token, self.app_token):
            raise _ApiError("not_allowed_token_type")
        raise _ApiError("invalid_auth")

    # ------------------------------------------------------------------ message content

    def _checked_content(
        self, method: str, params: JsonDict, *, require: bool
    ) -> tuple[str | None, list[Any] | None]:
        """Validate text/blocks; record refusals as violations before answering the error."""
        try:
            text, blocks = _message_content(params)
            if require and not text and not blocks and not params.get("attachments"):
                raise _ApiError("no_text")
        except _ApiError as exc:
            problems = list(exc.extra.get("errors", []))
            self.violations.append(Violation(method, exc.error, problems, dict(params)))
            raise
        return text, blocks

    def _warn_missing_fallback(self, method: str, text: str | None, blocks: list[Any]) -> None:
        if blocks and not (text or "").strip():
            detail = "blocks without a top-level text fallback (notifications, screen readers)"
            self.warnings.append(SlackWarning(method, "missing_text", detail))

    # ------------------------------------------------------------------ Web API methods

    def _auth_test(self, params: JsonDict) -> JsonDict:
        return {
            "url": f"https://{TEAM_DOMAIN}.slack.com/",
            "team": "Fake Workspace",
            "user": BOT_NAME,
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, params: JsonDict) -> JsonDict:
        channel = _required(params, "channel", "channel_not_found")
        text, blocks = self._checked_content("chat.postMessage", params, require=True)
        message = Message(channel, self.next_ts(), text or "", blocks or [])
        message.thread_ts = _optional(params, "thread_ts")
        self._warn_missing_fallback("chat.postMessage", text, message.blocks)
        self.messages[(channel, message.ts)] = message
        return {"channel": channel, "ts": message.ts, "message": message.to_api()}

    def _chat_update(self, params: JsonDict) -> JsonDict:
        channel = _required(params, "channel", "channel_not_found")
        ts = _required(params, "ts", "message_not_found")
        message = self.messages.get((channel, ts))
        if message is None:
            raise _ApiError("message_not_found")
        if message.bot_id is None:
            raise _ApiError("cant_update_message")  # bots can only edit their own messages
        text, blocks = self._checked_content("chat.update", params, require=False)
        # Slack keeps the previous blocks when the field is omitted; [] removes them.
        if text is not None:
            message.text = text
        if blocks is not None:
            message.blocks = blocks
        message.edits += 1
        self._warn_missing_fallback("chat.update", message.text, message.blocks)
        return {"channel": channel, "ts": ts, "text": message.text, "message": message.to_api()}

    def _chat_post_ephemeral(self, params: JsonDict) -> JsonDict:
        channel = _required(params, "channel", "channel_not_found")
        user = _required(params, "user", "user_not_found")
        text, blocks = self._checked_content("chat.postEphemeral", params, require=True)
        ephemeral = Ephemeral(channel, user, self.next_ts(), text or "", blocks or [])
        self._warn_missing_fallback("chat.postEphemeral", text, ephemeral.blocks)
        self.ephemerals.append(ephemeral)
        return {"message_ts": ephemeral.ts}

    def _chat_get_permalink(self, params: JsonDict) -> JsonDict:
        channel = _required(params, "channel", "channel_not_found")
        ts = _required(params, "message_ts", "message_not_found")
        message = self.messages.get((channel, ts))
        if message is None:
            raise _ApiError("message_not_found")
        permalink = f"https://{TEAM_DOMAIN}.slack.com/archives/{channel}/p{ts.replace('.', '')}"
        if message.thread_ts is not None and message.thread_ts != ts:
            permalink += f"?thread_ts={message.thread_ts}&cid={channel}"
        return {"channel": channel, "permalink": permalink}

    def _usergroups_users_list(self, params: JsonDict) -> JsonDict:
        usergroup = _required(params, "usergroup", "no_such_subteam")
        if usergroup not in self.usergroup_members:
            raise _ApiError("no_such_subteam")
        return {"users": list(self.usergroup_members[usergroup])}

    def _users_info(self, params: JsonDict) -> JsonDict:
        user_id = _required(params, "user", "user_not_found")
        if user_id in self.users:
            return {"user": self.users[user_id]}
        if not user_id.startswith(("U", "W")):
            raise _ApiError("user_not_found")
        return {"user": _default_user(user_id)}

    def _conversations_replies(self, params: JsonDict) -> JsonDict:
        channel = _required(params, "channel", "channel_not_found")
        ts = _required(params, "ts", "thread_not_found")
        if (channel, ts) not in self.messages:
            raise _ApiError("thread_not_found")
        thread = [message.to_api() for message in self.thread(channel, ts)]
        if len(thread) > 1:
            thread[0].update(thread_ts=ts, reply_count=len(thread) - 1, latest_reply=thread[-1]["ts"])
        start = int(_optional(params, "cursor") or 0)  # cursor is an opaque offset here
        limit = int(_optional(params, "limit") or 1000)
        page = thread[start : start + limit]
        next_cursor = str(start + limit) if start + limit < len(thread) else ""
        return {
            "messages": page,
            "has_more": bool(next_cursor),
            "response_metadata": {"next_cursor": next_cursor},
        }

    def _apps_connections_open(self, params: JsonDict) -> JsonDict:
        ticket = uuid.uuid4().hex
        self._tickets.add(ticket)
        return {"url": f"ws://127.0.0.1:{self.port}/socket-mode/link/?ticket={ticket}&app_id={APP_ID}"}

    # ------------------------------------------------------------------ response_url

    def _dispatch_hook(self, hook_id: str, params: JsonDict) -> _Reply:
        if self._down_status is not None:
            return _Reply(self._down_status, {"ok": False, "error": "service_unavailable"})
        hook = self._hooks.get(hook_id)
        if hook is None:
            return _Reply(404, {"ok": False, "error": "expired_url"})
        limited = _pop_fault(self._rate_limits, "response_url")
        if limited is not None:
            return _rate_limited_reply(limited)
        try:
            failure = _pop_fault(self._failures, "response_url")
            if failure is not None:
                raise _ApiError(failure.error, failure.status)
            if hook.uses >= RESPONSE_URL_MAX_USES:
                raise _ApiError("used_url", 404)  # error string approximates Slack's
            self._apply_hook(hook, params)
            hook.uses += 1
            return _Reply(200, {"ok": True})
        except _ApiError as exc:
            return _Reply(exc.status if exc.status != 200 else 400, {"ok": False, "error": exc.error})

    def _apply_hook(self, hook: _Hook, params: JsonDict) -> None:
        """Slack's response_url semantics: delete, replace, post in channel, or ephemeral."""
        if _truthy(params.get("delete_original")):
            if hook.message is not None:
                self.messages.pop(hook.message, None)
            return
        text, blocks = self._checked_content("response_url", params, require=True)
        self._warn_missing_fallback("response_url", text, blocks or [])
        if _truthy(params.get("replace_original")) and self._replace_for_hook(hook, text, blocks):
            return
        if params.get("response_type") == "in_channel" and hook.channel is not None:
            message = Message(hook.channel, self.next_ts(), text or "", blocks or [])
            message.thread_ts = _optional(params, "thread_ts")
            self.messages[(hook.channel, message.ts)] = message
            hook.message = hook.message or (hook.channel, message.ts)
            return
        ephemeral = Ephemeral(hook.channel, hook.user, self.next_ts(), text or "", blocks or [])
        ephemeral.via = "response_url"
        self.ephemerals.append(ephemeral)
        hook.ephemeral = ephemeral

    def _replace_for_hook(self, hook: _Hook, text: str | None, blocks: list[Any] | None) -> bool:
        target = self.messages.get(hook.message) if hook.message is not None else None
        if target is not None:
            target.text, target.blocks = text or "", blocks or []
            target.edits += 1
            return True
        if hook.ephemeral is not None:
            hook.ephemeral.text, hook.ephemeral.blocks = text or "", blocks or []
            return True
        return False

    # ------------------------------------------------------------------ Socket Mode (server side)

    async def _handle_socket(self, request: web.Request) -> web.StreamResponse:
        if self._down_status is not None:
            raise web.HTTPServiceUnavailable()
        if request.query.get("ticket") not in self._tickets:
            raise web.HTTPUnauthorized()
        ws = web.WebSocketResponse(timeout=_WS_CLOSE_TIMEOUT)
        await ws.prepare(request)
        connection = SocketConnection(next(self._connection_numbers), ws)
        self.connections.append(connection)
        try:
            await ws.send_json(self._hello())
            await self._notify()
            async for frame in ws:
                if frame.type == WSMsgType.TEXT:
                    await self._on_socket_text(frame.data, connection.number)
        finally:
            connection.closed.set()
            await self._notify()
        return ws

    def _hello(self) -> JsonDict:
        open_count = sum(1 for connection in self.connections if connection.open)
        return {
            "type": "hello",
            "num_connections": open_count,
            "debug_info": {
                "host": "fake-slack",
                "build_number": 1,
                "approximate_connection_time": 3600,
            },
            "connection_info": {"app_id": APP_ID},
        }

    async def _on_socket_text(self, data: str, connection: int) -> None:
        try:
            message = json.loads(data)
        except json.JSONDecodeError:
            self.violations.append(Violation("socket_ack", "invalid_json", [data[:200]], {}))
            return
        envelope_id = message.get("envelope_id") if isinstance(message, dict) else None
        if not isinstance(envelope_id, str):
            self.violations.append(Violation("socket_ack", "no_envelope_id", [], {"raw": message}))
            return
        self._check_ack_payload(message)
        sent = next((e for e in self.envelopes if e.envelope_id == envelope_id), None)
        elapsed = time.monotonic() - sent.sent_at if sent is not None else 0.0
        ack = Ack(envelope_id, message.get("payload"), elapsed, message, connection)
        self.acks.setdefault(envelope_id, ack)  # Slack honours the first ack only
        await self._notify()

    def _check_ack_payload(self, message: JsonDict) -> None:
        """An ack payload becomes a message (slash command reply), so it obeys Block Kit too."""
        payload = message.get("payload")
        if not isinstance(payload, dict) or "blocks" not in payload:
            return
        try:
            _message_content(payload)
        except _ApiError as exc:
            problems = list(exc.extra.get("errors", []))
            self.violations.append(Violation("socket_ack", exc.error, problems, payload))


def _rate_limited_reply(fault: _Fault) -> _Reply:
    headers = {"Retry-After": str(fault.retry_after if fault.retry_after is not None else 1)}
    return _Reply(429, {"ok": False, "error": fault.error}, headers)


def _accepts_response_payload(envelope_type: str, payload: Mapping[str, Any]) -> bool:
    """Slack sets this for slash commands and for interactions whose ack can carry a body."""
    if envelope_type == "slash_commands":
        return True
    return envelope_type == "interactive" and payload.get("type") in (
        "view_submission",
        "block_suggestion",
    )


def _default_user(user_id: str) -> JsonDict:
    name = user_id.lower()
    return {
        "id": user_id,
        "team_id": TEAM_ID,
        "name": name,
        "real_name": name,
        "deleted": False,
        "is_bot": False,
        "is_admin": False,
        "tz": "UTC",
        "profile": {"display_name": name, "real_name": name},
    }


__all__ = [
    "APP_ID",
    "BOT_ID",
    "BOT_USER_ID",
    "TEAM_DOMAIN",
    "TEAM_ID",
    "Ack",
    "Call",
    "Envelope",
    "Ephemeral",
    "FakeSlack",
    "Message",
    "SlackWarning",
    "SocketConnection",
    "Violation",
    "block_problems",
]
