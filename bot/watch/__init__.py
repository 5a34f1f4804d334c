"""The incident lifecycle's pure core: what a poll's changes mean for the alert stream.

No I/O and no clock: each function takes the changes, the time and what is open, and says what to
do (hold, release, which incident a change belongs to, whether an approved fix explains it).
`step` puts them together for one poll and returns typed effects; the watcher (bot/watcher.py)
only reads what the step needs and applies its effects, in one store transaction per poll.

- codes: FindingCode, the finding codes shared between health, snapshot, diff and the watcher.
- settle: derived findings held while Pacemaker is still acting, released if they outlive it.
- grouping: the node a change belongs to (links, VIPs, clones, the VIP spread), so one node's
  failure stays one incident whichever symptom shows first, and its recovery tail stays in it.
- fixes: the approved remediations acting on a cluster, and which changes they explain.
- lifecycle: flapping: when a toggling key stays quiet, which flapping incident to open or widen,
  which flaps calmed; how loud a follow-up is.
- records: an incident's stored payload (IncidentRecord), and how the step names an incident
  (its id, or `New` for one the same poll opens).
- effects: what a poll writes, as values: open, update, reopen, resolve an incident, post a
  message, save the watch state, count a metric, log a line.
- step: one poll decided: which incident each change opens, joins, reopens or resolves, first
  sight of a cluster, flaps opening and ending, an approved fix's effects, the settling tail.
"""
