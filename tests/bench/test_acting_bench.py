"""What each reading of "Pacemaker is acting" covers, over the recorded lab sequences (issue 14).

Run: pytest -m bench -s tests/bench/test_acting_bench.py

node1's view is sampled every 10 ms of every Pacemaker recording. While it shows a derived symptom
(a clone instance missing on an online node, or a VIP away from its online home; maintenance
excluded), how much of that time does crm_mon's pending action show, how much the DC's controller
state (crmadmin, not S_IDLE), and how much either? The rest is Pacemaker done acting (no quorum,
a VIP held away by its constraint): what settling must alert.
"""

from __future__ import annotations

import pytest

from bot.errors import ParseError
from bot.pacemaker.model import NodeView, Role
from bot.pacemaker.parse import parse, parse_controller
from tests.fakes.sequences import Sequence, load, names

pytestmark = pytest.mark.bench
STEP_S = 0.01
_IN_FLIGHT = (Role.STARTING, Role.STOPPING, Role.MIGRATING)


def _view(seq: Sequence, t: float) -> NodeView | None:
    answer = seq.answer("node1", "crm_mon", t)
    try:
        view = parse(answer.out) if answer is not None and answer.rc == 0 else None
    except ParseError:
        return None
    return view if view is not None and view.connected else None


def _symptom(seq: Sequence, view: NodeView) -> bool:
    if view.summary.options.maintenance_mode or any(n.maintenance for n in view.nodes):
        return False
    online = {n.name for n in view.nodes if n.healthy}
    homes = dict(zip(seq.vips, seq.nodes, strict=True))
    away = any(home in online and view.running_on(vip) != (home,) for vip, home in homes.items())
    return away or any(set(view.running_on(c)) != online for c in seq.everywhere)


def _dc_acting(seq: Sequence, view: NodeView, t: float) -> bool:
    answer = seq.answer(view.dc, "crmadmin", t) if view.dc else None
    try:
        return answer is not None and answer.rc == 0 and not parse_controller(answer.out).at_rest
    except ParseError:
        return False


def test_bench_what_pending_actions_and_the_controller_state_cover() -> None:
    lines, total = [], {"symptom": 0.0, "pending": 0.0, "controller": 0.0, "either": 0.0}
    for name in names():
        seq = load(name)
        if seq.kind != "pacemaker":
            continue
        seen = dict.fromkeys(total, 0.0)
        for i in range(int(seq.ready / STEP_S), int(seq.duration / STEP_S)):
            t = i * STEP_S
            view = _view(seq, t)
            if view is None or not _symptom(seq, view):
                continue
            pending = any(r.pending or r.role in _IN_FLIGHT for top in view.resources for r in top.walk())
            dc = _dc_acting(seq, view, t)
            for key, hit in (("symptom", True), ("pending", pending), ("controller", dc),
                             ("either", pending or dc)):
                seen[key] += STEP_S * hit
        for key in total:
            total[key] += seen[key]
        lines.append(f"{name:24} {seen['symptom']:6.2f}s  {seen['pending']:6.2f}s  {seen['controller']:6.2f}s"
                     f"  {seen['either']:6.2f}s")
    share = {k: total[k] / total["symptom"] for k in total}
    print(f"\nBENCH time a derived symptom showed, and how much of it each reading called acting\n"
          f"{'scenario':24} {'symptom':>7}  {'pending':>7}  {'DC busy':>7}  {'either':>7}\n"
          + "\n".join(lines)
          + f"\n{'all':24} {total['symptom']:6.2f}s  {share['pending']:6.0%}  {share['controller']:7.0%}"
          f"  {share['either']:7.0%}")
