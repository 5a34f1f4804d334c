"""What a cold start does before the settings are validated: guess the nodes, open TCP.

A cold `clusterbot status` spends most of its first ~0.3 s importing asyncssh, pydantic and
pydantic-settings, and each node's sshd then needs its own time to accept, fork and re-exec
before its banner comes (~14 ms on the lab, plus a round trip on a real network). Reading the
config file's node list with the standard library (`guess_nodes`) lets the TCP connects start
at once, from threads, and the SSH handshakes start as soon as asyncssh is loaded, while
pydantic still imports and validates, and a node's built-in read commands (never a command
from the file) go down its read shell at once. A guess is only a guess: the pool uses a
connection opened from it only for a validated target with exactly the same connection
parameters (`bot.ssh.SshTarget.connection`), and the answers only where the validated settings
ask exactly the same command lines; anything else is closed unread. The host key check is
asyncssh's as always. Standard library only, so that none of this waits for the imports it is
meant to overlap.
"""

from __future__ import annotations

import os
import socket
import threading
import tomllib
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

Address = tuple[str, int]
EarlySockets = dict[Address, "Future[socket.socket]"]
Argv = tuple[str, ...]

# Defaults of the settings (bot/settings.py uses these), here so the guess needs no pydantic.
DEFAULT_CONFIG = Path("/etc/clusterbot/clusterbot.toml")  # what deploy/clusterbot.service passes
DEFAULT_SSH_USER = "clusterbot"
DEFAULT_SSH_PORT = 22
DEFAULT_KNOWN_HOSTS = Path("/etc/clusterbot/known_hosts")
DEFAULT_CONNECT_TIMEOUT_S = 5.0
DEFAULT_SUDO = True
# The read commands (bot.settings.Commands), and what a corosync-only cluster asks instead.
CRM_MON: Argv = ("crm_mon", "--one-shot", "--inactive", "--output-as=xml")
DAEMONS: Argv = ("systemctl", "is-active", "corosync", "pacemaker", "pcsd")
COROSYNC_DAEMONS: Argv = ("systemctl", "is-active", "corosync")
QUORUM: Argv = ("corosync-quorumtool", "-s")
LINKS: Argv = ("corosync-cfgtool", "-s")
# crmadmin's own bound: the local controller answers in ~15 ms; one that does not within 1 s must
# not hold up the node's answer (issue 14: whether Pacemaker is acting is read, not decisive).
CONTROLLER_TIMEOUT = "--timeout=1s"


def controller_argv(node: str) -> Argv:
    """Ask a node about its own controller: the DC answers its state (S_IDLE at rest), the others
    S_NOT_DC, or S_PENDING / S_ELECTION ... while they join or elect. `node` is the configured
    Pacemaker node name (bot.settings.Name), never chat input; build_command quotes it."""
    return ("crmadmin", f"--status={node}", "--output-as=xml", CONTROLLER_TIMEOUT)


def config_file(path: Path | str | None) -> Path | None:
    """The config file a command reads: `path`, else $CLUSTERBOT_CONFIG, else DEFAULT_CONFIG if
    it exists (None: settings from the environment alone)."""
    chosen = path or os.environ.get("CLUSTERBOT_CONFIG")
    return Path(chosen) if chosen else DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


@dataclass(frozen=True, slots=True)
class NodeGuess:
    """One node as the config file names it, before validation (and before the environment,
    which may override it)."""

    name: str
    host: str
    port: int
    user: str
    key: Path
    known_hosts: Path
    connect_timeout_s: float
    sudo: bool
    # What a cold status would ask the node (bot.collect's order); none when the file configures
    # its own commands: only built-in ones are ever sent ahead of validation.
    reads: tuple[Argv, ...]


def guess_nodes(path: Path | str | None, clusters: Sequence[str] = ()) -> list[NodeGuess]:
    """The nodes of the named clusters (all if none named) as the raw config file gives them.
    Anything unexpected (no file, bad TOML, odd values, no key) gives fewer or no guesses:
    validation, which runs anyway, is what reports a broken config."""
    file = config_file(path)
    if file is None:
        return []
    try:
        with file.open("rb") as fh:
            raw = tomllib.load(fh)
        timeout = float(raw.get("connect_timeout_s", DEFAULT_CONNECT_TIMEOUT_S))
        return [guess for cluster in raw.get("clusters", ())
                if not clusters or cluster.get("name") in clusters
                for guess in _cluster_nodes(cluster, timeout)]
    except (OSError, ValueError, TypeError, AttributeError, KeyError):
        return []


def _cluster_nodes(cluster: dict[str, object], timeout: float) -> list[NodeGuess]:
    key = cluster.get("ssh_key")
    if not isinstance(key, str):
        return []  # no key: the connection would fail anyway, and say so after validation
    user = str(cluster.get("ssh_user", DEFAULT_SSH_USER))
    known = Path(str(cluster.get("known_hosts", DEFAULT_KNOWN_HOSTS)))
    sudo = cluster.get("sudo", DEFAULT_SUDO)
    if not isinstance(sudo, bool):
        return []
    kind = cluster.get("kind", "pacemaker") if "commands" not in cluster else None
    nodes = cluster.get("nodes")
    if not isinstance(nodes, list):
        return []
    # A bare host string means Pacemaker node name = host, as in the settings.
    tables = [{"name": n, "host": n} if isinstance(n, str) else dict(n) for n in nodes]
    return [NodeGuess(str(n["name"]), str(n["host"]), int(n.get("port", DEFAULT_SSH_PORT)),
                      user, Path(key), known, timeout, sudo, _reads(kind))
            for n in tables]


def _reads(kind: object) -> tuple[Argv, ...]:
    """What bot.collect asks a cold node of a cluster of this kind with the built-in commands,
    for a one-shot status (which asks no controller state: nothing in a status shows it)."""
    if kind == "pacemaker":
        return (CRM_MON, DAEMONS, QUORUM, LINKS)
    return (COROSYNC_DAEMONS, QUORUM, LINKS) if kind == "corosync" else ()


def connect_early(addresses: Iterable[Address], timeout_s: float) -> EarlySockets:
    """One thread per address runs the TCP connect; each future gives the connected socket, or
    the OSError (TimeoutError included) that the connect raised."""
    early: EarlySockets = {}
    for address in dict.fromkeys(addresses):
        done: Future[socket.socket] = Future()
        threading.Thread(target=_connect, args=(address, timeout_s, done), daemon=True,
                         name=f"connect {address[0]}:{address[1]}").start()
        early[address] = done
    return early


def _connect(address: Address, timeout_s: float, done: Future[socket.socket]) -> None:
    if not done.set_running_or_notify_cancel():
        return  # given up on before it started
    try:
        sock = socket.create_connection(address, timeout=timeout_s)
    except OSError as exc:
        done.set_exception(exc)
    else:
        done.set_result(sock)


def close_unused(early: EarlySockets) -> None:
    """Close whatever was opened but never taken (now, or when its connect finishes)."""
    for done in early.values():
        close_when_done(done)
    early.clear()


def close_when_done(done: Future[socket.socket]) -> None:
    """For a connect nobody waits for any more: its socket is closed when it comes."""
    done.add_done_callback(_close)


def _close(done: Future[socket.socket]) -> None:
    if done.exception() is None:
        done.result().close()
