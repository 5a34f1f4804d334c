"""Every recorded lab sequence through the real collector, watcher and store (issue 14): one real
event, one incident, at 1 s and 5 s polls and several poll phases.

The sequences are real Pacemaker 2.1.5 / Corosync 3 answers with their real timing
(tests/fixtures/sequences, recorded by deploy/lab/record.py). The harness (tests/fakes/replay.py)
polls them in virtual time; what the outbox holds is what Slack gets.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from bot.collect import Collector
from bot.demo.sshd import KeyMaterial, LoopbackSshServer
from bot.settings import Settings
from bot.ssh import SshPool
from bot.store import AsyncStore
from bot.watcher import Watcher
from tests.fakes.nodes import USER, cluster_config
from tests.fakes.replay import MENTION, Replay, VClock, replay, shown_at, start_of
from tests.fakes.sequences import Sequence, load, names

POLLS = (1.0, 5.0)
PHASES = tuple(i / 8 for i in range(8))  # fractions of the poll interval
CRITICAL = ":red_circle:"
_SHOWN: dict[str, float | None] = {}


async def _shown(seq: Sequence, tmp: Path) -> float | None:
    if seq.name not in _SHOWN:
        _SHOWN[seq.name] = await shown_at(seq, tmp)
    return _SHOWN[seq.name]


def _only_fixes(seq: Sequence) -> bool:
    """Every step that changes the cluster is an approved fix: nothing else is news."""
    return all(s.remediation is not None for s in seq.steps if s.action != "wait")


def _check(seq: Sequence, r: Replay, poll_s: float, shown: float | None) -> None:
    where = f"{seq.name} at {poll_s:g}s, phase {r.phase:g}: " + "; ".join(
        f"{m.at:.2f} {m.kind} {m.verdict[:90]}" for m in r.messages)
    # One real event, one incident: never two roots, and one whenever a poll saw a problem while
    # no approved fix was acting.
    assert len(r.roots) <= 1, where
    if r.unhealthy_polls:
        assert len(r.roots) == 1, where
    # An approved fix's effects open nothing: where only fixes act, no incident at all.
    if _only_fixes(seq):
        assert not [m for m in r.roots if m.incident is not None and "approved fix" not in m.verdict], where
    assert not r.false_recoveries(), where
    # Every problem ends resolved, in its thread: nothing open, each root's incident edited resolved.
    assert r.open_at_end == [], where
    for root in r.roots:
        assert any(m.kind == "edit" and m.incident == root.incident and "resolved after" in m.verdict
                   for m in r.messages), where
    # Its thread's last word is not "still wrong: …": what was still settling when the cause
    # recovered (a VIP not yet home, a clone instance not yet started) is closed there too.
    for root in r.roots:
        replies = [m for m in r.messages if m.incident == root.incident and m.kind == "reply"]
        assert not replies or "still wrong" not in replies[-1].verdict, where
    # Pages only for CRITICAL; none for what approved fixes do.
    assert all(CRITICAL in m.verdict for m in r.pages), where
    if _only_fixes(seq):
        assert not r.pages, where
    # Latency kept: the first root within a poll (and 0.3 s) of when the change first showed.
    if r.roots and shown is not None:
        lag = r.first_root_lag(shown)
        assert lag is not None and lag <= poll_s + 0.3, where


@pytest.mark.parametrize("poll_s", POLLS)
@pytest.mark.parametrize("name", names())
async def test_a_recorded_sequence_is_one_incident_whatever_the_poll_phase(name: str, poll_s: float,
                                                                           tmp_path: Path) -> None:
    seq = load(name)
    shown = await _shown(seq, tmp_path)
    runs = [await replay(seq, tmp_path, poll_s=poll_s, phase=f * poll_s) for f in PHASES]
    for r in runs:
        _check(seq, r, poll_s, shown)
    if poll_s == 1.0 and not _only_fixes(seq):
        # At 1 s every recorded event lasts long enough to be seen: the root is never missing.
        assert all(len(r.roots) == 1 for r in runs)


@pytest.mark.parametrize("name", [n for n in names() if any(s.remediation for s in load(n).steps)])
async def test_a_fix_requested_in_another_channel_gets_one_plain_root_there(name: str,
                                                                           tmp_path: Path) -> None:
    """Alerts go to C0ALERTS, the request lives in C0REQUESTS: the alert channel gets one plain
    root per acting fix (no page), its effects in that root's thread and in the request's."""
    seq = load(name)
    r = await replay(seq, tmp_path, poll_s=1.0, request_channel="C0REQUESTS")
    fix_roots = [m for m in r.roots if "approved fix" in m.verdict]
    assert fix_roots and all(MENTION not in m.verdict for m in fix_roots)
    assert len(fix_roots) <= len({s.remediation for s in seq.steps if s.remediation})
    for root in fix_roots:
        assert any(m.kind == "reply" and m.incident == root.incident for m in r.messages)
    assert any(m.thread is not None and m.thread.startswith("req-") for m in r.messages)
    assert r.open_at_end == []  # the fix's root ends once it and its settle window are over
    if _only_fixes(seq):
        assert r.roots == fix_roots and not r.pages


async def test_a_power_cut_replayed_over_real_ssh_is_one_root_with_the_rest_in_its_thread(
        tmp_path: Path) -> None:
    """The same replay, but every answer crosses a real SSH connection: loopback asyncssh servers,
    one per node, answer each command line the collector sends (sudo, read shells and all) with
    what that node recorded at the virtual time of the poll."""
    seq = load("power_cut_rejoin")
    clock = VClock(start_of(seq))
    keys = KeyMaterial.create(tmp_path / "keys")

    def node(name: str) -> Callable[[str, str], Awaitable[tuple[int, str, str]]]:
        async def handle(command: str, username: str) -> tuple[int, str, str]:
            sample = seq.reply(name, command, clock.t)
            if sample is None or sample.rc is None:
                return 127, "", f"{command}: not recorded\n"
            return sample.rc, sample.out, sample.err
        return handle

    async with AsyncExitStack() as stack:
        servers = {n: await stack.enter_async_context(LoopbackSshServer(
            node(n), authorized_key=keys.public_key, username=USER, name=n)) for n in seq.nodes}
        keys.write_known_hosts(servers.values())
        config = cluster_config("power-cut-rejoin", servers, keys, mention=MENTION)
        settings = Settings(clusters=(config,), poll_interval_s=1.0, alert_channel="C0ALERTS",
                            flap_limit=4, flap_window_s=120.0, state_dir=tmp_path)
        store = await AsyncStore.open(tmp_path / "state.db")
        stack.push_async_callback(store.close)
        pool = await stack.enter_async_context(SshPool())
        watcher = Watcher(settings=settings, collect=Collector(pool, settings, now=clock.now).collect,
                          store=store, clock=clock.now, monotonic=clock.monotonic)
        while clock.t <= seq.duration + 20:
            await watcher.poll(config)
            clock.t += 1.0
        sent = await store.due(clock.now(), limit=1000)
        assert await store.open_incidents(config.name) == []
    roots = [m for m in sent if m.kind == "root"]
    said = [str(m.payload["doc"]) for m in sent]
    assert len(roots) == 1 and "node3" in str(roots[0].payload["doc"]), said
    (inc,) = {m.payload.get("incident") for m in roots}
    assert all(m.payload.get("incident") == inc for m in sent)  # the rest in its thread
    assert any(m.kind == "edit" and "resolved after" in str(m.payload["doc"]) for m in sent)
    assert sum(s.commands.__len__() for s in servers.values()) > 0
