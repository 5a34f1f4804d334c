#!/usr/bin/env python3
"""Wait until the cblab cluster, as one node sees it, meets every given condition.

Polls `crm_mon -1 --output-as=xml` inside NODE (through nodectl.sh exec) and never sleeps a
fixed time: it returns as soon as the conditions hold, or fails after --timeout seconds with
the conditions still unmet. Standard library only, so it runs under any python3.

Conditions (all must hold at once):
  healthy              quorum, node1-3 online and not standby, virtual_ip_N on nodeN,
                       loadbalancer-clone on all three, no failed actions
  quorum | no-quorum   the node's partition has (no) quorum
  online:N[,N...]      the nodes are online          offline:N[,N...]  the nodes are offline
  standby:N[,N...]     the nodes are in standby      unstandby:N[,N...] online and not standby
  running:RES          RES is active somewhere       running:RES@NODE  active on NODE
  running:RES@!NODE    active, but not on NODE       stopped:RES       active nowhere
  clone:ID=COUNT       COUNT instances of clone ID are active
  failures | no-failures   there are (no) failed resource actions
  dc | dc:NODE         there is a DC (it is NODE)
  down                 crm_mon on the node cannot connect (pacemaker is not running there)

Exit 0 when met (prints the seconds it took), 1 on timeout, 2 on usage errors.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

_NODECTL = Path(__file__).resolve().parent / "nodectl.sh"
_LAB_NODES = ("node1", "node2", "node3")
_POLL_S = 0.2  # between crm_mon calls; one call costs ~15 ms locally
_CRM_MON_TIMEOUT_S = 10  # per call; crm_mon normally answers at once or fails at once


@dataclass(frozen=True)
class View:
    """What one crm_mon call said; xml is None when crm_mon failed."""

    xml: ET.Element | None
    error: str = ""


def crm_mon(node: str) -> View:
    argv = ["bash", str(_NODECTL), node, "exec", "crm_mon", "-1", "--output-as=xml"]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=_CRM_MON_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return View(None, "crm_mon timed out")
    if done.returncode != 0:
        return View(None, f"crm_mon rc={done.returncode}: {done.stderr.decode().strip()[:200]}")
    try:
        return View(ET.fromstring(done.stdout))
    except ET.ParseError as exc:
        return View(None, f"crm_mon XML unreadable: {exc}")


def _node_attr(root: ET.Element, name: str, attr: str) -> str | None:
    node = root.find(f"./nodes/node[@name='{name}']")
    return None if node is None else node.get(attr)


def _where(root: ET.Element, rsc: str) -> list[str]:
    """Nodes where primitive RSC (top level or inside a clone) is active."""
    found = []
    for res in root.iter("resource"):
        if res.get("id") == rsc and res.get("active") == "true":
            found += [n.get("name", "") for n in res.findall("node")]
    return found


def _clone_count(root: ET.Element, clone_id: str) -> int:
    clone = root.find(f"./resources/clone[@id='{clone_id}']")
    if clone is None:
        return 0
    return sum(1 for r in clone.findall("resource") if r.get("active") == "true")


def _has_quorum(root: ET.Element) -> bool:
    dc = root.find("./summary/current_dc")
    return dc is not None and dc.get("with_quorum") == "true"


def _nodes(arg: str) -> list[str]:
    return [n for n in arg.split(",") if n]


def _running(root: ET.Element, spec: str) -> bool:
    rsc, _, where = spec.partition("@")
    nodes = _where(root, rsc)
    if not where:
        return bool(nodes)
    if where.startswith("!"):
        return bool(nodes) and where[1:] not in nodes
    return where in nodes


def holds(cond: str, view: View) -> bool:
    """True if CONDITION holds for VIEW; raises ValueError for an unknown condition."""
    if cond == "down":
        return view.xml is None
    root = view.xml
    if root is None:
        return False
    kind, _, arg = cond.partition(":")
    checks = {
        "healthy": lambda: _healthy(root),
        "quorum": lambda: _has_quorum(root),
        "no-quorum": lambda: not _has_quorum(root),
        "online": lambda: all(_node_attr(root, n, "online") == "true" for n in _nodes(arg)),
        "offline": lambda: all(_node_attr(root, n, "online") == "false" for n in _nodes(arg)),
        "standby": lambda: all(_node_attr(root, n, "standby") == "true" for n in _nodes(arg)),
        "unstandby": lambda: all(
            _node_attr(root, n, "standby") == "false" and _node_attr(root, n, "online") == "true"
            for n in _nodes(arg)
        ),
        "running": lambda: _running(root, arg),
        "stopped": lambda: not _where(root, arg),
        "clone": lambda: _clone_count(root, arg.partition("=")[0]) == int(arg.partition("=")[2]),
        "failures": lambda: root.find("./failures/failure") is not None,
        "no-failures": lambda: root.find("./failures/failure") is None,
        "dc": lambda: _dc_is(root, arg),
    }
    if kind not in checks:
        raise ValueError(f"unknown condition {cond!r}")
    return bool(checks[kind]())


def _dc_is(root: ET.Element, name: str) -> bool:
    dc = root.find("./summary/current_dc")
    if dc is None or dc.get("present") != "true":
        return False
    return not name or dc.get("name") == name


def _healthy(root: ET.Element) -> bool:
    conds = ["quorum", "no-failures", "unstandby:" + ",".join(_LAB_NODES)]
    conds += [f"running:virtual_ip_{i}@node{i}" for i in (1, 2, 3)]
    conds += ["clone:loadbalancer-clone=3"]
    view = View(root)
    return all(holds(c, view) for c in conds)


def wait_for(node: str, conds: list[str], timeout_s: float) -> tuple[bool, float, View]:
    """Poll until all CONDS hold on NODE; returns (met, seconds waited, last view)."""
    start = time.monotonic()
    while True:
        view = crm_mon(node)
        if all(holds(c, view) for c in conds):
            return True, time.monotonic() - start, view
        if time.monotonic() - start >= timeout_s:
            return False, time.monotonic() - start, view
        time.sleep(_POLL_S)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--node", default="node1", help="node whose view is polled")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument("conditions", nargs="+")
    args = parser.parse_args(argv)
    try:
        for cond in args.conditions:  # reject typos before waiting for a whole timeout
            holds(cond, View(ET.Element("x")))
    except ValueError as exc:
        parser.error(str(exc))
    met, secs, view = wait_for(args.node, args.conditions, args.timeout)
    if met:
        print(f"{secs:.2f}")
        return 0
    unmet = [c for c in args.conditions if not holds(c, view)]
    print(
        f"labwait: timeout after {secs:.1f} s on {args.node}; unmet: {' '.join(unmet)}"
        + (f" ({view.error})" if view.error else ""),
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
