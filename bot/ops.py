"""`clusterbot status` and `clusterbot check-config`: the collector from a terminal or cron.

Imports happen in the commands: registering them must not load asyncssh or pydantic, which
would make `clusterbot --help` (and every other command) pay for them."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.pacemaker.merge import ClusterReport, NodeResult
    from bot.settings import ClusterConfig, Settings
    from bot.ssh import SshPool

EXIT_OK, EXIT_UNHEALTHY, EXIT_USAGE = 0, 1, 2


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("status", help="collect and print the status of configured clusters")
    p.add_argument("clusters", nargs="*", help="cluster names (default: all)")
    p.add_argument("--format", choices=("text", "blocks", "json"), default="text")
    _config_arg(p)
    p.set_defaults(handler=status_command)
    c = sub.add_parser("check-config", help="validate the config; --connect also tries every node")
    c.add_argument("--connect", action="store_true", help="connect to every node and check it")
    _config_arg(c)
    c.set_defaults(handler=check_config_command)
    a = sub.add_parser("audit", help="print the audit log (append-only) from the state directory")
    a.add_argument("--jsonl", action="store_true", help="one JSON object per line (for export)")
    a.add_argument("-n", type=int, default=0, help="only the last N entries")
    _config_arg(a)
    a.set_defaults(handler=audit_command)


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML config file (default: $CLUSTERBOT_CONFIG)")


def pick_clusters(settings: Settings, names: list[str]) -> list[ClusterConfig]:
    from bot.errors import ConfigError

    if not settings.clusters:
        raise ConfigError("no clusters configured: add [[clusters]] to the config file")
    unknown = [n for n in names if settings.cluster(n) is None]
    if unknown:
        known = ", ".join(c.name for c in settings.clusters)
        raise ConfigError(f"unknown cluster {unknown[0]!r} (configured: {known})")
    return [c for c in settings.clusters if not names or c.name in names]


def _load_collector() -> None:
    """Import what a status needs (asyncssh, pydantic, the core) with the garbage collector
    paused: almost all a cold start allocates is module state that lives to the end, and the
    collector scanning it again and again while importing cost ~35 ms of a cold status (13% of
    its import time, measured). Frozen afterwards, later collections skip it too."""
    import gc
    import importlib

    gc.disable()
    try:
        for module in ("bot.settings", "bot.collect", "bot.render.json"):
            importlib.import_module(module)
    finally:
        gc.freeze()
        gc.enable()


def status_command(args: argparse.Namespace) -> int:
    import asyncio

    _load_collector()
    from bot.cli import format_reports
    from bot.settings import load_settings

    settings = load_settings(args.config)
    clusters = pick_clusters(settings, args.clusters)
    reports = asyncio.run(_collect(settings, clusters))
    print(format_reports(reports, args.format, lambda n: settings.cluster(n).expectations))  # type: ignore[union-attr]
    reached = all(r.has_view and not r.unreachable for r in reports)
    return EXIT_OK if reached and all(r.healthy for r in reports) else EXIT_UNHEALTHY


async def _collect(settings: Settings, clusters: list[ClusterConfig]) -> list[ClusterReport]:
    from bot.collect import Collector
    from bot.ssh import SshPool

    async with SshPool() as pool:
        return await Collector(pool, settings).collect_many(clusters)


@dataclass(frozen=True, slots=True)
class NodeCheck:
    cluster: str
    node: str
    ok: bool
    detail: str


def check_config_command(args: argparse.Namespace) -> int:
    import asyncio

    from bot.settings import DEFAULT_ALERT_CHANNEL, load_settings

    settings = load_settings(args.config)
    for cluster in pick_clusters(settings, []):
        print(f"{cluster.name}: {len(cluster.nodes)} nodes, user {cluster.ssh_user}, "
              f"sudo {'on' if cluster.sudo else 'off'}, known_hosts {cluster.known_hosts}")
        if not (cluster.alert_channel or settings.alert_channel):
            print(f"  warning: no alert_channel for {cluster.name}: the watcher posts its alerts "
                  f"to a channel named #{DEFAULT_ALERT_CHANNEL}")
    if not args.connect:
        print("config OK")
        return EXIT_OK
    checks = asyncio.run(_check_all(settings))
    for c in checks:
        print(f"  {'OK ' if c.ok else 'BAD'} {c.cluster}/{c.node}: {c.detail}")
    return EXIT_OK if all(c.ok for c in checks) else EXIT_UNHEALTHY


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

    from bot.runtime import open_store
    from bot.services import audit_line
    from bot.settings import load_settings

    store = open_store(load_settings(args.config))
    try:
        entries = store.audit_tail(args.n) if args.n else list(store.audit_all())
        for e in entries:
            print(json.dumps(e.to_dict(), sort_keys=True) if args.jsonl else audit_line(e))
    finally:
        store.close()
    return EXIT_OK
