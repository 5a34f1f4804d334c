"""TCP connections to the nodes opened while a cold start is still importing.

A cold `clusterbot status` spends most of its first ~0.3 s importing asyncssh and friends, and
each node's sshd then needs its own time to accept, fork and re-exec before its banner comes
(~14 ms on the lab, plus a round trip on a real network). Connecting from threads as soon as the
settings name the nodes lets both happen at once; the SSH handshake, with its host key check,
is asyncssh's as always, over the socket these threads opened. Standard library only, so that
starting them does not wait for the imports they are meant to overlap.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable
from concurrent.futures import Future

Address = tuple[str, int]
EarlySockets = dict[Address, "Future[socket.socket]"]


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
