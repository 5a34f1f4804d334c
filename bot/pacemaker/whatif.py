"""What-if for crm_simulate, pure: a remediation's change applied to a copy of the CIB, and what
crm_simulate then says Pacemaker would do.

A prediction is only Pacemaker's if crm_simulate sees the CIB *with the change*: on the live
CIB it can only say what would happen anyway. Each change here is exactly what the pcs command
writes: `pcs resource move(-with-constraint) R N` adds `cli-prefer-R` (role Started, score
INFINITY on N), `pcs resource clear R` removes R's cli-prefer/cli-ban constraints, and
`pcs node standby N` sets N's `standby` node attribute.
"""

from __future__ import annotations

import re

from lxml import etree  # type: ignore[import-untyped]  # no stubs shipped for lxml

from bot.errors import ParseError

MAX_BYTES = 64 * 1024 * 1024  # a CIB with a long status section on a big cluster stays far below
_DECL = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
# "  * Move       virtual_ip_1     ( node3 -> node1 )", "* Start  loadbalancer:2  ( node3 )"
_ACTION = re.compile(r"^\*\s+(?P<verb>\w+)\s+(?P<rsc>\S+)\s+\(\s*(?P<where>[^)]*?)\s*\)(?P<rest>.*)$")


def prefer(cib: bytes, resource: str, node: str) -> bytes:
    """The CIB after `pcs resource move-with-constraint RESOURCE NODE` (or pcs < 0.11's move)."""
    root = _load(cib)
    constraints = _section(root, "constraints")
    for old in constraints.xpath("rsc_location[@id=$id]", id=f"cli-prefer-{resource}"):
        constraints.remove(old)
    etree.SubElement(constraints, "rsc_location", id=f"cli-prefer-{resource}", rsc=resource,
                     role="Started", node=node, score="INFINITY")
    return _dump(root)


def clear(cib: bytes, resource: str) -> bytes:
    """The CIB after `pcs resource clear RESOURCE`: its move and ban constraints gone."""
    root = _load(cib)
    constraints = _section(root, "constraints")
    for old in constraints.xpath("rsc_location[@rsc=$rsc]", rsc=resource):
        cid = old.get("id", "")
        if cid == f"cli-prefer-{resource}" or cid.startswith(f"cli-ban-{resource}-on-"):
            constraints.remove(old)
    return _dump(root)


def standby(cib: bytes, node: str, on: bool) -> bytes:
    """The CIB after `pcs node standby NODE` (on) or `pcs node unstandby NODE`."""
    root = _load(cib)
    nodes = _section(root, "nodes")
    found = nodes.xpath("node[@uname=$n]", n=node)
    if not found:
        raise ParseError(f"the CIB has no node {node}")
    el = found[0]
    attrs = el.find("instance_attributes")
    if attrs is None:
        attrs = etree.SubElement(el, "instance_attributes", id=f"nodes-{el.get('id')}")
    pairs = attrs.xpath("nvpair[@name='standby']")
    pair = pairs[0] if pairs else etree.SubElement(attrs, "nvpair", id=f"nodes-{el.get('id')}-standby",
                                                    name="standby")
    pair.set("value", "on" if on else "off")
    return _dump(root)


def transition(stdout: str) -> tuple[str, ...]:
    """crm_simulate's "Transition Summary:" in words: `virtual_ip_1 would move node3 → node1`."""
    lines = stdout.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("Transition Summary")), None)
    if start is None:
        raise ParseError("crm_simulate printed no Transition Summary")
    out = []
    for line in lines[start + 1:]:
        text = line.strip()
        if not text:
            break
        if text.startswith("*"):
            out.append(_words(text))
    return tuple(out)


def _words(line: str) -> str:
    match = _ACTION.match(line)
    if match is None:
        return " ".join(line.lstrip("* ").split())
    verb, rsc, where = match["verb"], match["rsc"], match["where"]
    hops = [w.strip() for w in where.split("->")]
    rest = " ".join(match["rest"].split())
    tail = f" {rest}" if rest else ""
    if verb == "Move" and len(hops) == 2:
        return f"{rsc} would move {hops[0]} → {hops[1]}{tail}"
    if verb in ("Start", "Stop", "Restart", "Recover") and len(hops) == 1:
        return f"{rsc} would {verb.lower()} on {hops[0]}{tail}"
    return " ".join(line.lstrip("* ").split())


def _load(cib: bytes) -> etree._Element:
    if len(cib) > MAX_BYTES:
        raise ParseError(f"the CIB is {len(cib)} bytes, over the {MAX_BYTES}-byte cap")
    if _DECL.search(cib):
        raise ParseError("the CIB contains a DOCTYPE or ENTITY declaration: refused")
    parser = etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True, huge_tree=False)
    try:
        root = etree.fromstring(cib, parser)
    except etree.XMLSyntaxError as exc:
        raise ParseError(f"the CIB is not well-formed XML: {' '.join(exc.msg.split())[:200]}") from exc
    if root is None or root.tag != "cib":
        raise ParseError("not a CIB (cibadmin --query prints <cib>)")
    return root


def _section(root: etree._Element, name: str) -> etree._Element:
    found = root.find(f"configuration/{name}")
    if found is None:
        raise ParseError(f"the CIB has no configuration/{name} section")
    return found


def _dump(root: etree._Element) -> bytes:
    return bytes(etree.tostring(root, encoding="utf-8"))
