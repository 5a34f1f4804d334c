"""Property tests: any mutation or truncation of a real capture gives a model or a ParseError."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.errors import ParseError
from bot.pacemaker.health import evaluate
from bot.pacemaker.merge import single
from bot.pacemaker.parse import parse
from bot.render.blocks import to_blocks
from bot.render.status import status_doc
from tests.conftest import NODES, SCENARIOS, capture

REAL = [capture(s, n) for s in SCENARIOS for n in NODES]


def _survives(data: bytes) -> None:
    """Parse, judge and render; the only exception allowed anywhere is ParseError."""
    try:
        view = parse(data)
    except ParseError as exc:
        assert "\n" not in str(exc)
        return
    evaluate(view)
    assert len(to_blocks(status_doc(single(view)))) <= 50


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(doc=st.sampled_from(REAL), cut=st.integers(min_value=0, max_value=9000))
def test_truncation(doc: bytes, cut: int) -> None:
    _survives(doc[:cut])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(doc=st.sampled_from(REAL), data=st.data())
def test_byte_mutations(doc: bytes, data: st.DataObject) -> None:
    buf = bytearray(doc)
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(buf) - 1))
        buf[pos] = data.draw(st.integers(0, 255))
    _survives(bytes(buf))


ATTR_VALUES = st.one_of(st.sampled_from(["true", "false", "", "-1", "INFINITY", "Master", "x" * 500,
                                         "1e9", "2026-13-45 99:99:99Z", "Mon Foo 99"]),
                        st.text(max_size=30))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(doc=st.sampled_from(REAL), data=st.data())
def test_attribute_mutations(doc: bytes, data: st.DataObject) -> None:
    """Replace attribute values with odd ones: structure stays valid XML, values go wild."""
    from lxml import etree

    root = etree.fromstring(doc)
    elements = [el for el in root.iter() if el.attrib]
    for _ in range(data.draw(st.integers(1, 6))):
        el = data.draw(st.sampled_from(elements))
        key = data.draw(st.sampled_from(sorted(el.attrib)))
        value = data.draw(ATTR_VALUES)
        try:
            el.set(key, value)
        except ValueError:
            continue  # lxml refuses control characters in attributes: not a document we can get
    _survives(etree.tostring(root))


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(doc=st.sampled_from(REAL), data=st.data())
def test_element_deletions(doc: bytes, data: st.DataObject) -> None:
    from lxml import etree

    root = etree.fromstring(doc)
    for _ in range(data.draw(st.integers(1, 5))):
        elements = [el for el in root.iter() if el.getparent() is not None]
        if not elements:
            break
        el = data.draw(st.sampled_from(elements))
        parent = el.getparent()
        assert parent is not None
        parent.remove(el)
    _survives(etree.tostring(root))


@pytest.mark.parametrize("junk", [b"\x00" * 100, b"\xff\xfe<\x00", "ünïcödé".encode("utf-16")])
def test_binary_junk(junk: bytes) -> None:
    _survives(junk)
