"""`systemctl is-active UNIT...` output -> per-daemon state, like pcs status' "Daemon Status"."""

from __future__ import annotations

from dataclasses import dataclass

DAEMONS = ("corosync", "pacemaker", "pcsd")
_KNOWN = frozenset({"active", "inactive", "failed", "activating", "deactivating", "reloading",
                    "unknown", "maintenance", "refreshing"})


@dataclass(frozen=True, slots=True)
class Daemons:
    """State per unit; `systemd=False` when the node has no systemd (a state, not an error)."""

    states: tuple[tuple[str, str], ...] = ()
    systemd: bool = True

    def state(self, unit: str) -> str | None:
        return dict(self.states).get(unit)

    @property
    def inactive(self) -> tuple[str, ...]:
        return tuple(u for u, s in self.states if s != "active")


def parse_is_active(units: tuple[str, ...], stdout: str, stderr: str = "") -> Daemons:
    """One line per unit in order; anything unreadable makes that unit "unknown"."""
    if "systemd" in stderr and ("not been booted" in stderr or "not found" in stderr):
        return Daemons(systemd=False)
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    if not lines and stderr.strip():
        return Daemons(systemd=False)
    states = tuple(
        (unit, lines[i] if i < len(lines) and lines[i] in _KNOWN else "unknown")
        for i, unit in enumerate(units)
    )
    return Daemons(states=states)
