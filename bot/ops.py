"""`clusterbot status` and `clusterbot check-config`: the collector from a terminal or cron.

Imports happen in the commands: registering them must not load asyncssh or pydantic, which
would make `clusterbot --help` (and every other command) pay for them."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot.cli import EXIT_OK, EXIT_UNHEALTHY, whole_number
from bot.errors import ConfigError, first_line

if TYPE_CHECKING:
    from bot.early import EarlySockets, NodeGuess
    from bot.pacemaker.merge import NodeResult
    from bot.settings import ClusterConfig, Settings
    from bot.ssh import SshPool


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("status", help="collect and print the status of configured clusters")
    p.add_argument("clusters", nargs="*", help="cluster names (default: all)")
    p.add_argument("--format", choices=("text", "blocks", "json"), default="text")
    p.set_defaults(handler=status_command)
    c = sub.add_parser("check-config", help="validate the config; --connect also tries every node")
    c.add_argument("--connect", action="store_true", help="connect to every node and check it")
    c.set_defaults(handler=check_config_command)
    a = sub.add_parser("audit", help="print the audit log (append-only) from the state directory")
    a.add_argument("--jsonl", action="store_true", help="one JSON object per line (for export)")
    a.add_argument("-n", type=whole_number(0, 10**9), default=0, help="only the last N entries")
    a.set_defaults(handler=audit_command)


def pick_clusters(settings: Settings, names: list[str]) -> list[ClusterConfig]:
    if not settings.clusters:
        raise ConfigError("no clusters configured: add [[clusters]] to the config file")
    unknown = [n for n in names if settings.cluster(n) is None]
    if unknown:
        known = ", ".join(c.name for c in settings.clusters)
        raise ConfigError(f"unknown cluster {unknown[0]!r} (configured: {known})")
    return [c for c in settings.clusters if not names or c.name in names]


def _load(*modules: str) -> None:
    """Import what a status needs (asyncssh, pydantic, the core) with the garbage collector
    paused: almost all a cold start allocates is module state that lives to the end, and the
    collector scanning it again and again while importing cost ~35 ms of a cold status (13% of
    its import time, measured). Frozen afterwards, later collections skip it too."""
    import gc
    import importlib

    gc.disable()
    try:
        for module in modules:
            importlib.import_module(module)
    finally:
        gc.freeze()
        gc.enable()


def status_command(args: argparse.Namespace) -> int:
    """A cold start (cron, a monitoring check) does its waiting while it imports: the TCP
    connects start from the config file's own node list, the SSH handshakes and read shells as
    soon as asyncssh is loaded, and pydantic imports and validates the settings in a thread
    meanwhile. Only a connection whose parameters the validated settings confirm is used."""
    import asyncio

    from bot.early import connect_early, guess_nodes

    guessed = guess_nodes(args.config, args.clusters)
    early = connect_early(((g.host, g.port) for g in guessed),
                          max((g.connect_timeout_s for g in guessed), default=1))
    _load("bot.ssh")
    return asyncio.run(_status(args, guessed, early))


async def _status(args: argparse.Namespace, guessed: list[NodeGuess], early: EarlySockets) -> int:
    import asyncio

    from bot.ssh import SshPool, SshTarget, connect_ahead

    ahead = connect_ahead(((SshTarget(node=g.name, host=g.host, port=g.port, user=g.user,
                                      client_keys=(g.key,), known_hosts=g.known_hosts, sudo=g.sudo,
                                      connect_timeout_s=g.connect_timeout_s), g.reads)
                           for g in guessed), early)
    async with SshPool(early=early, ahead=ahead) as pool:
        settings, clusters = await asyncio.to_thread(_validated, args)
        from bot.collect import Collector

        reports = await Collector(pool, settings, controller=False).collect_many(clusters)
    from bot.cli import format_reports

    print(format_reports(reports, args.format, lambda n: settings.cluster(n).expectations))  # type: ignore[union-attr]
    reached = all(r.has_view and not r.unreachable for r in reports)
    return EXIT_OK if reached and all(r.healthy for r in reports) else EXIT_UNHEALTHY


def _validated(args: argparse.Namespace) -> tuple[Settings, list[ClusterConfig]]:
    """The settings and the clusters asked for, with what collecting and rendering them
    imports (run in a thread while the connections open)."""
    _load("bot.settings")
    from bot.settings import load_settings

    settings = load_settings(args.config, need_clusters=True)
    clusters = pick_clusters(settings, args.clusters)
    _load("bot.collect", "bot.render.json")
    return settings, clusters


@dataclass(frozen=True, slots=True)
class NodeCheck:
    cluster: str
    node: str
    ok: bool
    detail: str


def check_config_command(args: argparse.Namespace) -> int:
    import asyncio

    from bot.settings import load_settings

    settings = load_settings(args.config, need_clusters=True)
    for cluster in pick_clusters(settings, []):
        print(f"{cluster.name}: {len(cluster.nodes)} nodes, user {cluster.ssh_user}, "
              f"sudo {'on' if cluster.sudo else 'off'}, known_hosts {cluster.known_hosts}, "
              f"alerts to {cluster.alert_channel or settings.alert_channel or '(none)'}")
    problems = config_problems(settings)
    for problem in problems:
        print(f"  problem: {problem}")
    checks = asyncio.run(_check_all(settings)) if args.connect else []
    for c in checks:
        print(f"  {'OK ' if c.ok else 'BAD'} {c.cluster}/{c.node}: {c.detail}")
    state_ok, state = check_state(settings) if args.connect else (True, "")
    if args.connect:
        print(f"  {'OK ' if state_ok else 'BAD'} state: {state}")
    if problems:
        print(f"config has {len(problems)} problem{'s' if len(problems) > 1 else ''}")
    elif not args.connect:
        print("config OK")
    return EXIT_OK if not problems and state_ok and all(c.ok for c in checks) else EXIT_UNHEALTHY


def config_problems(settings: Settings) -> list[str]:
    """What the config file alone cannot show: the files it names and the state directory as
    this user sees them, and clusters whose alerts would have nowhere to go. `run` refuses to
    start with any of these, so the journal says it once instead of every node failing later."""
    import asyncssh

    from bot.settings import misspelt_environment

    problems = misspelt_environment()
    for cluster in settings.clusters:
        if cluster.ssh_key is None:
            problems.append(f"{cluster.name}: ssh_key is not set: the bot cannot log in to its nodes")
        problems += [f"{cluster.name}: {why}" for why in (
            _unreadable("ssh_key", cluster.ssh_key, asyncssh.read_private_key),
            _unreadable("known_hosts", cluster.known_hosts, asyncssh.read_known_hosts)) if why]
        if not (cluster.alert_channel or settings.alert_channel):
            problems.append(f"{cluster.name}: no alert_channel: set the cluster's or the top-level "
                            "alert_channel to the channel id its incidents go to")
    if (why := _not_writable(Path(settings.state_dir))) is not None:
        problems.append(f"state_dir {settings.state_dir}: {why}")
    return problems


def _unreadable(key: str, path: Path | None, load: Callable[[str], object]) -> str | None:
    """Why `path` is no use to the bot: missing, unreadable, or not what it should hold (`load`
    reads it the way the SSH client will)."""
    from asyncssh import KeyImportError

    if path is None:
        return None
    if not path.is_file():
        return f"{key} {path} does not exist" if not path.exists() else f"{key} {path} is not a file"
    if not os.access(path, os.R_OK):
        return f"{key} {path} is not readable by this user"
    try:
        load(str(path))
    except (OSError, ValueError, KeyImportError) as exc:
        said = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"{key} {path} cannot be used: {said}"
    return None


def _not_writable(directory: Path) -> str | None:
    """Why the bot could not create its database in `directory` (created if missing)."""
    existing = next(p for p in (directory, *directory.parents) if p.exists())
    if not existing.is_dir():
        return f"{existing} is not a directory"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable by this user" if existing == directory else (
            f"does not exist and {existing} is not writable by this user")
    return None


def check_state(settings: Settings) -> tuple[bool, str]:
    """`check-config --connect`: can the bot use its state database, at which schema version, and
    does a replica lead now? Only reads: a database a newer release migrated is reported, not touched."""
    import sqlite3

    from bot.leader import state_leader
    from bot.runtime import DB_NAME
    from bot.store import SCHEMA_VERSION

    if settings.store_url is not None:
        try:
            where, found = _pg_version(settings.store_url.get_secret_value())
        except Exception as exc:  # psycopg's errors: the server, the network, the URL, the password
            return False, f"PostgreSQL: {first_line(exc)}"
    else:
        path = Path(settings.state_dir) / DB_NAME
        where = f"SQLite {path}"
        try:
            found = _sqlite_version(path) if path.is_file() else None
        except sqlite3.Error as exc:
            return False, f"{where}: {exc}"
    if found is None:
        return True, f"{where}: no state yet: `run` creates it (schema version {SCHEMA_VERSION})"
    version = found
    if version > SCHEMA_VERSION:
        return False, (f"{where}: schema version {version} is newer than this release's {SCHEMA_VERSION}: "
                       "upgrade clusterbot, or restore the backup taken before the upgrade")
    upgrade = f", `run` upgrades it to {SCHEMA_VERSION}" if version < SCHEMA_VERSION else ""
    try:
        leads = state_leader(settings)
    except Exception as exc:  # the lock's database went away since: say so, the rest is checked
        leads = f"who leads is unknown: {first_line(exc)}"
    return True, f"{where}: schema version {version}{upgrade}; {leads}"



def _pg_version(url: str) -> tuple[str, int | None]:
    """Where (never the password) and the schema version; None before the first `run`."""
    import psycopg

    with psycopg.connect(url, connect_timeout=5, application_name="clusterbot-check") as conn:
        info = conn.info
        where = f"PostgreSQL {info.server_version // 10000} at {info.host}:{info.port}/{info.dbname}"
        if conn.execute("SELECT to_regclass('schema_version')").fetchone() == (None,):
            return where, None
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    return where, int(row[0]) if row and row[0] is not None else None


def _sqlite_version(path: Path) -> int:
    import sqlite3

    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


async def _check_all(settings: Settings) -> list[NodeCheck]:
    """Every node as the collector asks it (so a corosync-only cluster is asked its quorum and
    old Pacemaker gets the crm_mon -X fallback), plus Pacemaker's version."""
    import asyncio

    from bot.collect import Ask, Collector
    from bot.ssh import SshPool

    async with SshPool() as pool:
        collector = Collector(pool, settings)
        reports = await asyncio.gather(*(collector.collect(c, ask=Ask.ALL) for c in settings.clusters))
        jobs = [_check_node(pool, settings, cluster, result)
                for cluster, report in zip(settings.clusters, reports, strict=True)
                for result in report.results]
        return list(await asyncio.gather(*jobs))


async def _check_node(pool: SshPool, settings: Settings, cluster: ClusterConfig,
                      result: NodeResult) -> NodeCheck:
    from bot.collect import target_for
    from bot.errors import SshError

    node = result.node
    if result.error is not None:
        return NodeCheck(cluster.name, node, False, f"{result.error_kind}: {result.error}")
    sudo = "sudo OK" if cluster.sudo else "no sudo"
    if cluster.kind == "corosync":
        tool = "corosync-quorumtool OK" if result.ok else f"corosync: {result.corosync_error}"
        return NodeCheck(cluster.name, node, result.ok, f"reachable, host key OK, {sudo}, {tool}")
    conf = cluster.node(node)
    assert conf is not None
    try:
        version = await pool.run(target_for(cluster, conf, settings), cluster.commands.version,
                                 timeout_s=settings.command_timeout_s)
    except SshError as err:
        return NodeCheck(cluster.name, node, False, f"{err.kind}: {str(err).removeprefix(node + ': ')}")
    first = (version.stdout.strip().splitlines() or ["version unknown"])[0]
    tool = "crm_mon OK" if result.ok else "crm_mon: not connected to the cluster"
    return NodeCheck(cluster.name, node, result.ok, f"reachable, host key OK, {first}, {sudo}, {tool}")


def audit_command(args: argparse.Namespace) -> int:
    import json

    from bot.runtime import DB_NAME, open_store
    from bot.services import audit_line
    from bot.settings import load_settings

    settings = load_settings(args.config)
    if settings.store_url is None and not (Path(settings.state_dir) / DB_NAME).is_file():
        raise ConfigError(f"no state in {settings.state_dir} (no {DB_NAME}): the bot has not run "
                          "with this state_dir; check state_dir or --config")
    store = open_store(settings)
    try:
        entries = store.audit_tail(args.n) if args.n else list(store.audit_all())
        for e in entries:
            print(json.dumps(e.to_dict(), sort_keys=True) if args.jsonl else audit_line(e))
    finally:
        store.close()
    return EXIT_OK
