"""The simulator's CIB, pure: what `cibadmin --query` prints for it, what a CIB handed to
`crm_simulate --xml-pipe` asks for, and crm_simulate's Transition Summary lines.

Shaped like the lab's real output (tests/fixtures/cib/lab-2.1.5/); the simulator's status
section is empty because its own state machine, not Pacemaker's scheduler, decides placement.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

_DECL = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_TRUE = frozenset({"on", "true", "yes", "1", "y"})


@dataclass(frozen=True)
class CibShape:
    """What the simulator's CIB holds."""

    nodes: Sequence[str]
    vips: Sequence[str]
    clone: tuple[str, str]  # (clone id, primitive)
    standby: Mapping[str, bool]
    moves: Mapping[str, str]  # resource -> node of its cli-prefer constraint
    epoch: int
    dc: str


def cib_xml(shape: CibShape) -> str:
    def attr(**kv: object) -> str:
        return " ".join(f"{k}={quoteattr(str(v))}" for k, v in kv.items())

    ids = {n: i + 1 for i, n in enumerate(shape.nodes)}
    top = {"validate-with": "pacemaker-3.9", "epoch": shape.epoch, "num_updates": 0, "admin_epoch": 0,
           "crm_feature_set": "3.16.1", "have-quorum": 1, "dc-uuid": ids.get(shape.dc, 1)}
    lines = [f"<cib {attr(**top)}>",
             "  <configuration>", "    <crm_config>",
             '      <cluster_property_set id="cib-bootstrap-options">',
             f"        <nvpair {attr(id='cib-bootstrap-options-stonith-enabled', name='stonith-enabled')}"
             ' value="false"/>',
             "      </cluster_property_set>", "    </crm_config>", "    <nodes>"]
    for node in shape.nodes:
        i = ids[node]
        if shape.standby.get(node):
            lines += [f"      <node {attr(id=i, uname=node)}>",
                      f"        <instance_attributes {attr(id=f'nodes-{i}')}>",
                      f"          <nvpair {attr(id=f'nodes-{i}-standby', name='standby', value='on')}/>",
                      "        </instance_attributes>", "      </node>"]
        else:
            lines.append(f"      <node {attr(id=i, uname=node)}/>")
    lines += ["    </nodes>", "    <resources>"]
    lines += [f'      <primitive id={quoteattr(v)} class="ocf" provider="heartbeat" type="IPaddr2"/>'
              for v in shape.vips]
    clone_id, prim = shape.clone
    lines += [f"      <clone {attr(id=clone_id)}>",
              f'        <primitive id={quoteattr(prim)} class="ocf" provider="pacemaker" type="Dummy"/>',
              "      </clone>", "    </resources>", "    <constraints>"]
    for vip, home in zip(shape.vips, shape.nodes, strict=False):
        where = attr(id=f"location-{vip}-{home}-100", rsc=vip, node=home, score=100)
        lines.append(f"      <rsc_location {where}/>")
    for rsc, node in shape.moves.items():
        lines.append(f"      <rsc_location {attr(id=f'cli-prefer-{rsc}', rsc=rsc, role='Started', node=node)}"
                     ' score="INFINITY"/>')
    lines += ["    </constraints>", "  </configuration>", "  <status/>", "</cib>"]
    return "\n".join(lines) + "\n"


def read_cib(text: str) -> tuple[dict[str, str], dict[str, bool]] | None:
    """(cli-prefer moves, standby per node) of a CIB, or None if it is not one."""
    if _DECL.search(text):
        return None
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return None
    if root.tag != "cib":
        return None
    moves = {el.get("rsc", ""): el.get("node", "")
             for el in root.iterfind("configuration/constraints/rsc_location")
             if el.get("id", "").startswith("cli-prefer-")}
    standby = {}
    for node in root.iterfind("configuration/nodes/node"):
        pair = node.find("instance_attributes/nvpair[@name='standby']")
        standby[node.get("uname", "")] = pair is not None and pair.get("value", "").lower() in _TRUE
    return moves, standby


def summary_line(verb: str, rsc: str, where: str, why: str = "") -> str:
    """One Transition Summary line, padded like crm_simulate pads them."""
    return f"  * {verb:<10} {rsc:<16} ( {where} ){'  ' + why if why else ''}"
