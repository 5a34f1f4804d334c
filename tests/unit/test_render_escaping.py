"""Text from the cluster is data, never Slack markup: an agent's exitreason, a node's SSH error, a
tool's stderr or a command's output reach Slack escaped (`<!channel>` must not page anyone, nor
`<http://x|label>` hide a link), while clusterbot's own markup (the configured mention, user
mentions) stays markup, and the terminal shows the original characters."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from functools import cache
from xml.sax.saxutils import quoteattr

from bot.approvals import Request, Result, new_request
from bot.collect import _read_tool
from bot.corosync.model import NodeCorosync
from bot.corosync.parse import parse_cfgtool, parse_quorum
from bot.pacemaker.diff import IncidentDraft, incidents, step
from bot.pacemaker.health import Expectations, Severity
from bot.pacemaker.merge import ClusterReport, NodeResult, merge
from bot.pacemaker.parse import parse
from bot.remedies import plan
from bot.render.alerts import escalation_doc, incident_doc
from bot.render.approvals import SEP, output_doc, request_doc
from bot.render.blocks import MAX_SECTION_CHARS, to_blocks
from bot.render.doc import Doc
from bot.render.json import report_json
from bot.render.status import status_doc
from bot.render.text import to_text
from bot.slack.replies import message
from bot.ssh import Completed
from commands.cleanup import ACTION as CLEANUP
from tests.conftest import NODES, capture
from tests.fakes.nodes import cfgtool_answer, quorumtool_answer

PROD = Expectations(vips=("virtual_ip_1", "virtual_ip_2", "virtual_ip_3"),
                    everywhere=("loadbalancer-clone",))
# What a resource agent might print on failure; Slack would page the channel and show a disguised link.
EVIL = "<!channel> cannot mount <http://evil.example|click here> & retry"
ESCAPED = "&lt;!channel&gt; cannot mount &lt;http://evil.example|click here&gt; &amp; retry"
MENTION = "<!subteam^S0456ONCALL>"
T0 = datetime(2026, 11, 25, 21, 21, tzinfo=UTC)


def evil_capture(node: str, reason: str = EVIL) -> bytes:
    """The real e_failed_actions capture, its first failed action's exitreason set to `reason`."""
    xml = capture("e_failed_actions", node)
    assert b'exitreason=""' in xml
    return xml.replace(b'exitreason=""', b"exitreason=" + quoteattr(reason).encode(), 1)


def corosync_answer(node: str, stderr: str | None = None) -> NodeResult:
    """What the collector makes of the node's real Corosync answers; with `stderr`, quorumtool
    failed and printed that instead."""
    quorum = quorumtool_answer("e_failed_actions", node) if stderr is None else (1, "", stderr)
    q = _read_tool(Completed(node, ("corosync-quorumtool", "-s"), *quorum, 0.0), parse_quorum)
    links = cfgtool_answer("e_failed_actions", node)
    ls = _read_tool(Completed(node, ("corosync-cfgtool", "-s"), *links, 0.0), parse_cfgtool)
    failed = q if q.value is None else ls
    return NodeResult(node, corosync=NodeCorosync(q.value, ls.value), corosync_error=failed.error,
                      corosync_error_kind=failed.kind)


@cache
def evil_report() -> ClusterReport:
    """node1's view holds the agent's exitreason; node2's quorumtool fails with it on stderr; node3
    does not answer over SSH, the SSH error quoting it too."""
    node1 = corosync_answer("node1")
    node2 = corosync_answer("node2", stderr=f"Error: {EVIL}\n")
    results = [NodeResult("node1", parse(evil_capture("node1")), corosync=node1.corosync),
               NodeResult("node2", parse(evil_capture("node2")), corosync=node2.corosync,
                          corosync_error=node2.corosync_error, corosync_error_kind=node2.corosync_error_kind),
               NodeResult("node3", error=f"connection closed: {EVIL}", error_kind="unreachable")]
    return merge("prod-haproxy", results, PROD)


def slack_payload(doc: Doc) -> str:
    """What Slack receives: the Block Kit message as bot/slack/replies.py sends it."""
    return json.dumps(message(doc), ensure_ascii=False)


def assert_escaped(payload: str, times: int = 1) -> None:
    assert payload.count(ESCAPED) >= times, payload
    assert "<!channel>" not in payload and "<http://evil" not in payload
    assert "&amp;lt;" not in payload and "&amp;amp;" not in payload  # escaped once, not twice


def test_status_escapes_exitreason_ssh_and_tool_errors() -> None:
    doc = status_doc(evil_report(), PROD)
    payload = slack_payload(doc)
    # The failed action's finding, node3's SSH error and node2's Corosync tool error.
    assert_escaped(payload, times=3)
    assert f"ssh: connection closed: {ESCAPED}" in payload
    assert f"node2: corosync-quorumtool exited 1: Error: {ESCAPED}" in payload
    # The terminal shows what the agent wrote, not a link text.
    text = to_text(doc)
    assert f"({EVIL}) not cleaned up" in text and f"ssh: connection closed: {EVIL}" in text
    assert "&lt;" not in text and "&amp;" not in text
    # JSON is data for programs: the raw text, as the core keeps it.
    data = json.dumps(report_json(evil_report()), ensure_ascii=False)
    assert EVIL in data and "&lt;" not in data


def failed_action_draft() -> IncidentDraft:
    """The alert the watcher drafts when the failed action appears (healthy poll, then this one)."""
    state, _ = step(None, merge("prod-haproxy", [NodeResult(n, parse(capture("a_healthy", n)))
                                                 for n in NODES], PROD), PROD)
    evil = merge("prod-haproxy", [NodeResult(n, parse(evil_capture(n))) for n in NODES], PROD)
    _, events = step(state, evil, PROD)
    return next(d for d in incidents(events) if d.key == "vip:virtual_ip_1")


def quorum_lost_draft() -> IncidentDraft:
    state, _ = step(None, merge("prod-haproxy", [NodeResult(n, parse(evil_capture(n))) for n in NODES],
                                PROD), PROD)
    lost = merge("prod-haproxy", [NodeResult(n, parse(capture("d_two_nodes_down", n))) for n in NODES], PROD)
    _, events = step(state, lost, PROD)
    (draft,) = incidents(events)
    assert draft.severity is Severity.CRITICAL
    return draft


def test_alert_escapes_the_cluster_text_and_keeps_the_mention() -> None:
    failed = failed_action_draft()
    assert EVIL in failed.title  # the core keeps the raw text
    # The root message, edited to the whole story once a later poll made it CRITICAL: it pages.
    whole = failed.merged(quorum_lost_draft())
    doc = incident_doc("prod-haproxy", whole, incident_id=7, mention=MENTION, fix_button=True)
    payload = slack_payload(doc)
    assert_escaped(payload, times=3)  # title, evidence, fallback `text`
    assert payload.count(MENTION) == 1 and doc.verdict.startswith(MENTION)
    text = to_text(doc)
    assert EVIL in text and "&lt;" not in text and MENTION in text


def test_escalation_names_its_incident_escaped() -> None:
    failed = failed_action_draft()
    doc = escalation_doc("prod-haproxy", quorum_lost_draft(), incident_key=failed.key,
                         incident_title=failed.title, was=Severity.WARNING, mention=MENTION)
    payload = slack_payload(doc)
    assert_escaped(payload)
    assert doc.verdict.startswith(MENTION)
    assert EVIL in to_text(doc)


def evil_request() -> Request:
    """A cleanup of the failed action, planned on the live report as Remediation plans it."""
    p = plan(CLEANUP, ("virtual_ip_1", "node1"), evil_report())
    assert EVIL in p.reason  # the finding the cleanup answers: the agent's exitreason
    argv = tuple(a for cmd in p.commands for a in (*cmd, SEP))[:-1]
    return new_request(id="0123456789abcdef", cluster="prod-haproxy", action=p.action,
                       args=("virtual_ip_1", "node1"), node=p.node, argv=argv, requester="U123",
                       channel="C1", reason=p.reason, prediction=f"unavailable ({EVIL})",
                       fingerprint="f" * 16, now=T0, ttl_s=600, required_approvals=1,
                       allow_self_approval=False)


def test_approval_request_escapes_why_and_prediction_and_keeps_mentions() -> None:
    asked = slack_payload(request_doc(evil_request(), sudo=True, approvers=("U777", "S0456ONCALL"), now=T0))
    assert_escaped(asked, times=2)  # why, prediction
    assert "<@U123>" in asked and "<@U777>" in asked and MENTION in asked  # mentions stay markup


def test_remediation_output_is_escaped_inside_its_code_blocks() -> None:
    result = Result(1, stdout=f"Cleaned up virtual_ip_1 on node1\n{EVIL}\n",
                    stderr=f"Error: {EVIL}\n```\n<!here>", duration_s=1.2)
    doc = output_doc(evil_request(), result)
    out = slack_payload(doc)
    assert_escaped(out, times=2)  # stdout and stderr
    assert "<!here>" not in out and "&lt;!here&gt;" in out
    text = to_text(doc)
    assert f"Error: {EVIL}" in text and "<!here>" in text and "&lt;" not in text


def test_an_entity_in_the_data_stays_visible_as_written() -> None:
    """A literal `&lt;` in an exitreason is four characters, not `<`: escaped once, shown as such."""
    reason = "expected &lt;ip&gt; & got none"
    report = merge("prod-haproxy", [NodeResult(n, parse(evil_capture(n, reason))) for n in NODES], PROD)
    doc = status_doc(report, PROD)
    assert "expected &amp;lt;ip&amp;gt; &amp; got none" in slack_payload(doc)
    assert f"({reason}) not cleaned up" in to_text(doc)


def test_a_clipped_line_never_ends_in_half_an_entity() -> None:
    """Slack's 3000 characters a section: escaped data cut there must not leave `&am` behind."""
    for pad in range(4):
        line = "x" * pad + "&lt;" * 1000  # `<<<…` from the cluster
        (block,) = to_blocks(Doc(verdict=line, fallback="f"))
        text = block["text"]["text"]
        assert len(text) <= MAX_SECTION_CHARS and text.endswith("…")
        assert re.search(r"&[a-z]*…$", text) is None, text[-12:]
