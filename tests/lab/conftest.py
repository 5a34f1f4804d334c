"""Lab session: bring the real cluster up once, heal it before every test, tear it down at the end.

Every test under tests/lab is marked `lab`. They run as root on Linux when asked for: CI set (as
.ci/run does) or CLUSTERBOT_LAB=1; CLUSTERBOT_SKIP_LAB=1 skips them anyway (labkit.skip_reason).
Once they run, a failed up.sh FAILS them with the tail of its output.
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from bot.collect import Collector
from bot.settings import ClusterConfig, Settings
from bot.ssh import SshPool
from tests.lab import labkit

_HERE = Path(__file__).parent
_SKIP = labkit.skip_reason()  # decided once, before the root conftest cleans the environment


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE not in item.path.parents:
            continue  # this hook sees the whole session's items
        item.add_marker(pytest.mark.lab)
        if _SKIP is not None:
            item.add_marker(pytest.mark.skip(reason=_SKIP))


@pytest.fixture(scope="session")
def lab() -> Iterator[None]:
    """The lab, up for the whole session and down at its end, whatever happened in between."""
    with ExitStack() as stack:
        _or_fail(lambda: stack.enter_context(labkit.exclusive()))
        stack.callback(_down)  # also after a failed up.sh (it cleans up itself, too)
        _or_fail(labkit.lab_up)
        yield


def _down(attempts: int = 3) -> None:
    """Tear the lab down, retrying: a process caught mid-exit by the kernel can outlive one
    SIGKILL round. If it still fails, say so loudly on stderr: the tests' verdicts stand, and
    .ci/run's EXIT trap runs down.sh once more."""
    for attempt in range(1, attempts + 1):
        try:
            labkit.lab_down()
            return
        except labkit.LabError as err:
            problem = str(err)
            time.sleep(2.0 * attempt)  # give PID 1 time to reap what was killed
    sys.stderr.write(f"\nWARNING: the lab did not come down cleanly after {attempts} tries:\n{problem}\n")


def _or_fail(step: Callable[[], object]) -> None:
    """Run a step of the lab's bring-up; its failure FAILS every lab test (never a skip)."""
    try:
        step()
        return
    except labkit.LabError as err:
        problem = str(err)
    pytest.fail(f"the lab is not available, so the lab tests cannot run:\n{problem}", pytrace=False)


@pytest.fixture(autouse=True)
def healthy(lab: None) -> None:
    """Every test starts from the healthy cluster, whatever the previous one left behind."""
    labkit.heal()


@pytest.fixture
def lab_settings(tmp_path: Path) -> Settings:
    return labkit.settings(tmp_path / "state")


@pytest.fixture
def cluster(lab_settings: Settings) -> ClusterConfig:
    found = lab_settings.cluster("lab")
    assert found is not None, f"no cluster 'lab' in {labkit.CONFIG}"
    return found


@pytest.fixture
async def collector(lab_settings: Settings) -> AsyncIterator[Collector]:
    """The bot's real collector, over real SSH to the three nodes."""
    async with SshPool() as pool:
        yield Collector(pool, lab_settings)
