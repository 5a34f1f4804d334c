"""Operational HTTP endpoints: /healthz and /readyz, /metrics, and the signed /push wake-up.

Route factories take their dependencies as plain callables and return aiohttp RouteDefs, so the
same handlers mount on the Slack HTTP app (HTTP mode) or on their own port via `serve_ops`
(Socket Mode, where clusterbot has no inbound HTTP app of its own).

/push is the fast path for Pacemaker alert agents (deploy/alert-agent): a signed request only
wakes the watcher of one cluster, which then polls as usual. Polling stays the source of truth:
a push carries no state the bot believes, so a replayed or lost push costs one poll at most.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from bot.metrics import Metrics
from bot.settings import NAME_RE
from bot.signing import MAX_SKEW_S as MAX_SKEW_S  # re-exported: the push tests and agent docs use it
from bot.signing import PUSH, sign, verify
from bot.slack.serve import HttpServer, RefusalLog, bounded_body, new_web_app

log = logging.getLogger(__name__)

# A readiness check answers True when healthy; it may be sync or async and may raise.
Check = Callable[[], bool | Awaitable[bool]]
Wake = Callable[[str], bool]

TIMESTAMP_HEADER: Final = PUSH.timestamp_header
SIGNATURE_HEADER: Final = PUSH.signature_header
MAX_PUSH_BYTES: Final = 64 * 1024  # an alert is a few hundred bytes
CHECK_TIMEOUT_S: Final = 2.0  # a hung dependency makes readiness fail, not hang the probe
EVENT_FIELDS: Final = ("kind", "node", "rsc", "task", "desc", "rc", "timestamp")


# ---------------------------------------------------------------- signing (shared with tests)


def signature(secret: str | bytes, timestamp: str, body: bytes) -> str:
    """"v1=" + hex HMAC-SHA256 over "v1:{timestamp}:{body}" (the alert agent computes the same)."""
    return sign(PUSH, secret, timestamp, body)


# ---------------------------------------------------------------- /healthz, /readyz


def health_routes(*, slack_connected: Check, store_writable: Check,
                  delivery_running: Check | None = None,
                  leadership: Callable[[], Mapping[str, object]] | None = None) -> list[web.RouteDef]:
    """GET /healthz: liveness (the event loop answers). /healthz?ready=1 and /readyz: readiness.

    delivery_running, when the bot watches clusters: the alert deliverer's loop still runs (had it
    died, alerts would pile up in the outbox with nothing else to show for it). leadership: this
    replica's role, epoch and whether the leader lock's database answers; shown, not a check: a
    follower is as ready to answer Slack as the leader."""
    checks: dict[str, Check] = {"slack": slack_connected, "store": store_writable}
    if delivery_running is not None:
        checks["delivery"] = delivery_running

    async def readyz(request: web.Request) -> web.Response:
        results = await _run_checks(checks)
        ready = all(results.values())
        body: dict[str, object] = {"status": "ready" if ready else "not ready", "checks": results}
        if leadership is not None:
            body.update(leadership())
        return web.json_response(body, status=200 if ready else 503)

    async def healthz(request: web.Request) -> web.Response:
        if request.query.get("ready", "") not in ("", "0", "false"):
            return await readyz(request)
        return web.json_response({"status": "ok"})

    return [web.get("/healthz", healthz), web.get("/readyz", readyz)]


async def _run_checks(checks: Mapping[str, Check]) -> dict[str, bool]:
    names = list(checks)
    outcomes = await asyncio.gather(*(_one_check(n, checks[n]) for n in names))
    return dict(zip(names, outcomes, strict=True))


async def _one_check(name: str, check: Check) -> bool:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            result = check()
            if inspect.isawaitable(result):
                result = await result
            return bool(result)
    except Exception as exc:  # a broken check means "not ready", never a 500
        log.warning("readiness check %s failed: %s", name, exc or type(exc).__name__)
        return False


def sqlite_writable(path: Path | str, busy_timeout_s: float = 1.0) -> Check:
    """A readiness check: can we take the write lock on the bot's SQLite file right now?

    BEGIN IMMEDIATE then ROLLBACK: catches a read-only file or mount, a vanished file and a
    writer stuck holding the lock, and writes nothing. Runs in a thread on its own connection,
    so a busy database delays the probe, never the event loop.
    """
    uri = f"file:{Path(path).as_posix()}?mode=rw"  # mode=rw: a missing file fails, not created

    def probe() -> bool:
        conn = sqlite3.connect(uri, uri=True, timeout=busy_timeout_s, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        finally:
            conn.close()
        return True

    async def check() -> bool:
        return await asyncio.to_thread(probe)

    return check


# ---------------------------------------------------------------- /metrics


def metrics_routes(metrics: Metrics) -> list[web.RouteDef]:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": metrics.content_type})

    return [web.get("/metrics", handler)]


# ---------------------------------------------------------------- /push


def push_routes(*, secret: str | bytes, wake: Wake, metrics: Metrics | None = None,
                clock: Callable[[], float] = time.time) -> list[web.RouteDef]:
    """POST /push: verify, parse, wake(cluster). 401 bad or stale signature, 404 unknown cluster.

    Nothing happens before the signature checks out: no parsing, no logging of the body.
    """
    key = secret.encode() if isinstance(secret, str) else secret
    if not key:
        raise ValueError("push secret is empty; leave /push unmounted instead")

    refusals = RefusalLog("push")

    def count(outcome: str) -> None:
        if metrics is not None:
            metrics.push(outcome)

    async def handler(request: web.Request) -> web.Response:
        body = await bounded_body(request, MAX_PUSH_BYTES)
        if body is None:
            refusals.refused(request.remote, f"body over {MAX_PUSH_BYTES} bytes")
            count("too_large")
            return _error(413, "body too large")
        why = verify(PUSH, key, request.headers, body, clock())
        if why is not None:
            refusals.refused(request.remote, why)
            count("unauthorized")
            return _error(401, "unauthorized")  # one answer for every failure: no oracle
        parsed = _parse_push(body)
        if isinstance(parsed, str):
            count("bad_request")
            return _error(400, parsed)
        cluster, event = parsed
        if not wake(cluster):
            count("unknown_cluster")
            return _error(404, f"unknown cluster {cluster}")
        count("accepted")
        log.info("push for %s: %s", cluster, _describe(event))
        return web.json_response({"status": "accepted", "cluster": cluster}, status=202)

    return [web.post("/push", handler)]


def _parse_push(body: bytes) -> tuple[str, Mapping[str, Any]] | str:
    """(cluster, event) or a one-line reason. The event is only logged, never trusted."""
    try:
        doc = json.loads(body.decode("utf-8", errors="replace"))
    except ValueError:
        return "body is not JSON"
    if not isinstance(doc, dict):
        return "body must be a JSON object"
    cluster = doc.get("cluster")
    if not isinstance(cluster, str) or not NAME_RE.fullmatch(cluster):
        return "cluster must be a cluster name"
    event = doc.get("event", {})
    if not isinstance(event, dict):
        return "event must be a JSON object"
    return cluster, event


def _describe(event: Mapping[str, Any]) -> str:
    parts = [f"{k}={str(event[k])[:80]!r}" for k in EVENT_FIELDS if event.get(k) not in (None, "")]
    return " ".join(parts) or "no event details"


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"status": "error", "error": message}, status=status)


# ---------------------------------------------------------------- serving


def ops_routes(*, metrics: Metrics | None = None, slack_connected: Check | None = None,
               store_writable: Check | None = None, delivery_running: Check | None = None,
               push_secret: str | bytes | None = None, wake: Wake | None = None,
               serve_metrics: bool = True,
               leadership: Callable[[], Mapping[str, object]] | None = None) -> list[web.RouteDef]:
    """Every ops route whose dependencies were given: health always, the others when wired.

    serve_metrics=False: /metrics stays unmounted (the public Slack port) while /push still counts."""
    routes = health_routes(slack_connected=slack_connected or (lambda: True),
                           store_writable=store_writable or (lambda: True),
                           delivery_running=delivery_running, leadership=leadership)
    if metrics is not None and serve_metrics:
        routes += metrics_routes(metrics)
    if push_secret and wake is not None:
        routes += push_routes(secret=push_secret, wake=wake, metrics=metrics)
    return routes


async def serve_ops(host: str, port: int, routes: Sequence[web.RouteDef]) -> HttpServer:
    """Serve routes on their own host:port (port 0: any free port); `.port` is the bound port."""
    app = new_web_app(MAX_PUSH_BYTES)
    app.add_routes(routes)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = _bound_port(runner.addresses, port)
    log.info("ops endpoints on %s:%d (%s)", host, bound,
             ", ".join(sorted({r.path for r in routes})))
    return HttpServer(runner, bound)


def _bound_port(addresses: Sequence[Any], requested: int) -> int:
    for addr in addresses:
        if isinstance(addr, tuple) and len(addr) >= 2 and isinstance(addr[1], int):
            return addr[1]
    return requested
