"""Generate big crm_mon documents in Pacemaker 2.1.5's exact shape, for limits and benchmarks.

Element and attribute sets are copied from the real healthy capture, so a generated document
differs from a real one only in size and names.
"""

from __future__ import annotations

from lxml import etree

from tests.conftest import capture

_REAL = etree.fromstring(capture("a_healthy", "node1"))


def _template(xpath: str) -> etree._Element:
    found = _REAL.xpath(xpath)
    assert isinstance(found, list) and found, xpath
    el = found[0]
    assert isinstance(el, etree._Element)
    return el


def _clone_of(xpath: str, **attrs: str) -> etree._Element:
    el = etree.Element(_template(xpath).tag, dict(_template(xpath).attrib))
    for key, value in attrs.items():
        el.set(key.replace("__", "-"), value)
    return el


def generate(nodes: int = 32, resources: int = 1000, *, stopped: int = 0, offline: int = 0) -> bytes:
    """`resources` primitives spread round-robin; the last `stopped` are Stopped, the last
    `offline` nodes are OFFLINE."""
    root = etree.Element("pacemaker-result", dict(_REAL.attrib))
    for child in _REAL:
        if child.tag in ("pacemakerd", "summary"):
            root.append(etree.fromstring(etree.tostring(child)))
    root.find("summary/nodes_configured").set("number", str(nodes))
    root.find("summary/resources_configured").set("number", str(resources))
    names = [f"node{i + 1}" for i in range(nodes)]
    nodes_el = etree.SubElement(root, "nodes")
    for i, name in enumerate(names):
        down = i >= nodes - offline
        nodes_el.append(_clone_of("nodes/node", name=name, id=str(i + 1),
                                  online="false" if down else "true",
                                  is_dc="true" if i == 0 else "false"))
    up = names[: nodes - offline] or names
    res_el = etree.SubElement(root, "resources")
    for i in range(resources):
        res_el.append(_primitive(f"rsc_{i:04d}", up[i % len(up)], i >= resources - stopped))
    etree.SubElement(root, "status", code="0", message="OK")
    return etree.tostring(root)


def _primitive(rid: str, node: str, stopped: bool) -> etree._Element:
    el = _clone_of("resources/resource", id=rid, resource_agent="ocf:pacemaker:Dummy",
                   role="Stopped" if stopped else "Started",
                   active="false" if stopped else "true",
                   nodes_running_on="0" if stopped else "1")
    if not stopped:
        etree.SubElement(el, "node", name=node, id=node.removeprefix("node"), cached="true")
    return el
