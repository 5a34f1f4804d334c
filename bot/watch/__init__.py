"""The incident lifecycle's pure core: what a poll's changes mean for the alert stream.

No I/O and no clock: each function takes the changes, the time and what is open, and says what to
do (hold, release, which incident a change belongs to, whether an approved fix explains it). The
watcher (bot/watcher.py) applies the answers in one store transaction per poll.

- codes: FindingCode, the finding codes shared between health, snapshot, diff and the watcher.
- settle: derived findings held while Pacemaker is still acting, released if they outlive it.
- grouping: the node a change belongs to (links, VIPs, clones, the VIP spread), so one node's
  failure stays one incident whichever symptom shows first, and its recovery tail stays in it.
- fixes: the approved remediations acting on a cluster, and which changes they explain.
- lifecycle: flapping: when a toggling key stays quiet, which flapping incident to open or widen,
  which flaps calmed (typed effects the watcher applies).
"""
