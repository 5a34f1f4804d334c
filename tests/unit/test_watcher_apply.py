"""The watcher's one job once the step decided: write its effects to the real SQLite store, in
order and in one transaction, naming each incident the step opened by the id the store gave it."""

from __future__ import annotations

import asyncio

from bot.pacemaker.health import Severity
from bot.watch.effects import OpenIncident, Post, RootStory, UpdateIncident
from bot.watch.records import IncidentRecord, MessageKind, New
from bot.watch.step import Memory, Step
from tests.unit.test_watch_lifecycle import vip_down
from tests.unit.test_watcher_incidents import CLUSTER, make


def test_incidents_a_step_opens_are_named_by_their_store_ids_in_records_and_messages() -> None:
    bot = make()
    older = bot.store.open_incident(cluster=CLUSTER.name, key="older", severity=Severity.INFO, title="older",
                                    channel="alerts", now=bot.clock.now())
    now, draft = bot.clock.now(), vip_down()
    flap = IncidentRecord.new(silenced=("vip_stopped:vip1",), host=New(1))
    effects = (
        OpenIncident(New(1), draft.key, draft.severity, draft.title, "alerts", now,
                     IncidentRecord.new(holds=draft.opens, draft=draft)),
        Post(MessageKind.ROOT, RootStory(draft, New(1)), "alerts", New(1)),
        OpenIncident(New(2), "flapping:" + draft.key, Severity.WARNING, "flapping", "alerts", now, flap),
        UpdateIncident(New(2), record=flap.with_silenced({"vip_stopped:vip1", "vip_stopped:vip2"})),
    )
    asyncio.run(bot.watcher._apply(CLUSTER, Step(Memory(), effects), now))
    vip, flapping = bot.store.find_open_incident(CLUSTER.name, draft.key), bot.open("flapping:" + draft.key)
    assert vip is not None and flapping is not None and older.id < vip.id < flapping.id
    assert flapping.payload["host"] == vip.id  # after its open and after its update
    assert flapping.payload["silenced"] == ["vip_stopped:vip1", "vip_stopped:vip2"]
    ((kind, incident, verdict),) = bot.outbox()
    assert (kind, incident) == ("root", vip.id) and "vip1" in verdict  # the draft's root, rendered
