"""Several real `clusterbot run` processes sharing one state (SQLite file or PostgreSQL), against
in-process SSH nodes and the fake Slack: what the failover tests and the failover bench drive.

Each replica logs JSON to a pipe; a reader task keeps every record, and tests wait for the
record (or the fake Slack call) they expect, with a bounded timeout, never a sleep.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp

from bot.demo.cluster import DemoCluster
from tests.fakes.nodes import FakeCluster
from tests.fakes.signing import block_actions_body, sign, slash_command_body
from tests.fakes.slack import Call, FakeSlack
from tests.integration.test_cli_first_hour import clean_env
from tests.integration.test_cli_status import write_config

ALERTS = "C0ALERTS"
CHANNEL = "C0CHAN"  # where people type commands and click
SECRET = "replica-signing-secret"
WAIT_S = 60.0  # a bound on any one expected event; the machine is shared and loaded
Record = dict[str, Any]

# Fast enough for tests, and still the arithmetic of bot/leader.py (check + timeout < lock free).
FAST = {"poll_interval_s": 0.5, "settle_s": 2, "alert_retry_max_s": 0.5,
        "leader_retry_s": 0.3, "leader_check_s": 0.5, "leader_timeout_s": 1.0}


@dataclass
class Replica:
    name: str
    proc: asyncio.subprocess.Process
    records: list[Record] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)  # lines that are not JSON (a traceback)
    ended: bool = False  # its stderr closed: it exited
    _news: asyncio.Condition = field(default_factory=asyncio.Condition)
    _reader: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            text = line.decode(errors="replace").rstrip("\n")
            try:
                self.records.append(json.loads(text))
            except ValueError:
                self.stderr.append(text)
            async with self._news:
                self._news.notify_all()
        self.ended = True
        async with self._news:
            self._news.notify_all()

    async def wait_log(self, match: Callable[[Record], bool], timeout: float = WAIT_S,
                       after: int = 0) -> Record:
        """The first record (from index `after`) that matches; fails with the log tail on timeout."""
        def found() -> Record | None:
            return next((r for r in self.records[after:] if match(r)), None)
        try:
            async with asyncio.timeout(timeout), self._news:
                await self._news.wait_for(lambda: found() is not None or self.ended)
        except TimeoutError:
            tail = [r.get("msg") for r in self.records[-15:]]
            raise AssertionError(f"{self.name}: no matching log line in {timeout}s; last lines: "
                                 f"{tail} {self.stderr[-20:]}") from None
        record = found()
        assert record is not None, f"{self.name} ended: {self.stderr[-20:]}"
        return record

    def said(self, needle: str) -> list[Record]:
        return [r for r in self.records if needle in str(r.get("msg"))]

    async def leading(self, timeout: float = WAIT_S, after: int = 0) -> int:
        """Wait until this replica gains leadership; its epoch."""
        record = await self.wait_log(lambda r: r.get("role") == "leader", timeout, after)
        return int(record["epoch"])

    async def slash(self, slack: FakeSlack, text: str, user: str) -> int:
        """`/cluster TEXT` from `user`, signed, to this replica's Slack port; the HTTP status."""
        url = slack.response_url(channel=CHANNEL, user=user)
        body = slash_command_body(text=text, user_id=user, channel_id=CHANNEL, response_url=url)
        return await self._post(body)

    async def click(self, slack: FakeSlack, action_id: str, value: str, user: str) -> int:
        url = slack.response_url(channel=CHANNEL, user=user, message_ts="1.0", kind="actions")
        body = block_actions_body(action_id=action_id, value=value, user_id=user, channel_id=CHANNEL,
                                  message_ts="1.0", response_url=url)
        return await self._post(body)

    async def _post(self, body: bytes) -> int:
        port = await self.port("HTTP mode")
        headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(SECRET, body)}
        async with aiohttp.ClientSession() as http, http.post(
                f"http://127.0.0.1:{port}/slack/events", data=body, headers=headers) as resp:
            await resp.read()
            return resp.status

    async def ops(self, path: str) -> tuple[int, str]:
        """GET an ops endpoint (/readyz, /metrics) of this replica."""
        port = await self.port("ops endpoints")
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}{path}") as resp:
            return resp.status, await resp.text()

    async def port(self, what: str) -> int:
        """The port of "HTTP mode" (Slack) or "ops endpoints" (/readyz, /metrics), from the log."""
        record = await self.wait_log(lambda r: str(r.get("msg")).startswith(what))
        return int(str(record["msg"]).split(" on ", 1)[1].split(":")[1].split("/")[0].split(" ")[0])

    def kill(self) -> None:
        self.proc.kill()

    async def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = WAIT_S) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        async with asyncio.timeout(timeout):
            code = await self.proc.wait()
            if self._reader is not None:
                await self._reader
        return code


@dataclass
class Replicas:
    slack: FakeSlack
    cluster: FakeCluster
    config: Path
    env: dict[str, str]
    all: list[Replica] = field(default_factory=list)

    async def start(self, name: str, *, cwd: str | None = None, **env: str) -> Replica:
        """A replica (`cwd`: another source tree, for upgrades); returns once it serves."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", "--config", str(self.config), "--log-format", "json",
            env={**self.env, **env}, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            cwd=cwd)
        replica = Replica(name, proc)
        replica._reader = asyncio.create_task(replica._read(), name=f"read:{name}")
        self.all.append(replica)
        await replica.wait_log(lambda r: "clusterbot running" in str(r.get("msg")))
        return replica

    def roots(self) -> list[Call]:
        return [c for c in self.slack.calls if c.method == "chat.postMessage" and c.ok
                and c.params.get("channel") == ALERTS and not c.params.get("thread_ts")]

    def replies(self, thread: str) -> list[Call]:
        return [c for c in self.slack.calls if c.method == "chat.postMessage" and c.ok
                and c.params.get("thread_ts") == thread]

    def posts(self) -> list[Call]:
        return [c for c in self.slack.calls if c.method in ("chat.postMessage", "chat.update") and c.ok]

    async def wait_post(self, match: Callable[[Call], bool], timeout: float = WAIT_S) -> Call:
        return await self.slack.wait_for("chat.postMessage", match, timeout=timeout)


@asynccontextmanager
async def replicas(slack: FakeSlack, cluster: FakeCluster | DemoCluster, tmp: Path, *,
                   store: str | None = None, **settings: object) -> AsyncIterator[Replicas]:
    """A config for `cluster` (state in tmp, or in the database `store`: a store_url), and a way
    to start replicas on it; every replica still running at the end is killed."""
    top = {**FAST, **settings, "alert_channel": ALERTS}
    lines = "".join(f"{k} = {json.dumps(v)}\n" for k, v in top.items())
    if store is not None:
        lines += f"store_url = {json.dumps(store)}\n"
    config = write_config(cluster if isinstance(cluster, FakeCluster) else SimpleNamespace(
        config=cluster.config()), tmp / "clusterbot.toml", lines)
    env = clean_env(SLACK_BOT_TOKEN=slack.bot_token, SLACK_SIGNING_SECRET=SECRET,
                    CLUSTERBOT_SLACK_API_URL=slack.api_url, CLUSTERBOT_HTTP_HOST="127.0.0.1",
                    CLUSTERBOT_HTTP_PORT="0", CLUSTERBOT_METRICS_PORT="0")
    group = Replicas(slack, cluster, config, env)
    try:
        yield group
    finally:
        for replica in group.all:
            if replica.proc.returncode is None:
                replica.kill()
            await replica.proc.wait()
            if replica._reader is not None:
                await replica._reader
