"""The one settings class: a TOML file, overridden by CLUSTERBOT_* environment variables.

Slack secrets come from the conventional SLACK_BOT_TOKEN, SLACK_APP_TOKEN and
SLACK_SIGNING_SECRET. Nothing else in clusterbot reads the environment.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal


def _no_plugins(*_: object) -> Iterable[object]:
    return ()


def _without_pydantic_plugins() -> None:
    """Load pydantic without its plugin loader: looking plugins up imports importlib.metadata
    and reads every installed package's entry points when the first model is built, ~9 ms
    (4%) of a cold `clusterbot status`'s imports (measured), for plugins (pydantic's own
    extension point: observability hooks) that clusterbot does not use. As if
    PYDANTIC_DISABLE_PLUGINS=__all__, without the import. Only while pydantic is not loaded
    yet (a process that already uses pydantic keeps its plugins)."""
    if "pydantic" not in sys.modules:
        loader = types.ModuleType("pydantic.plugin._loader")
        loader.get_plugins = _no_plugins  # type: ignore[attr-defined]
        sys.modules.setdefault(loader.__name__, loader)


_without_pydantic_plugins()
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bot.early import (
    CRM_MON,
    DAEMONS,
    DEFAULT_CONFIG,
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_KNOWN_HOSTS,
    DEFAULT_SSH_PORT,
    DEFAULT_SSH_USER,
    DEFAULT_SUDO,
    LINKS,
    QUORUM,
    config_file,
)
from bot.errors import ConfigError
from bot.pacemaker.health import Expectations

# Pacemaker ids and node names: letters, digits, . _ - (and : for some node names). Anything
# else in a config or chat argument is refused before it gets near a command line.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,62}$"
NAME_RE = re.compile(NAME_PATTERN)
Name = Annotated[str, Field(pattern=NAME_PATTERN)]
Argv = tuple[str, ...]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeConfig(_Strict):
    name: Name  # the Pacemaker node name
    host: str = Field(min_length=1, max_length=253, pattern=r"^[A-Za-z0-9._:\[\]-]+$")
    port: int = Field(DEFAULT_SSH_PORT, ge=1, le=65535)


class Commands(_Strict):
    """The read commands run on every node. Remediation templates live with their commands."""

    crm_mon: Argv = CRM_MON
    crm_mon_legacy: Argv = ("crm_mon", "-1", "-r", "-X")
    daemons: Argv = DAEMONS
    version: Argv = ("pacemakerd", "--version")
    # Corosync's own view, asked of every node. Proxmox VE: ("pvecm", "status") prints the same
    # quorum/membership text (hex node ids, IP addresses) and is what its admins know.
    quorum: Argv = QUORUM
    links: Argv = LINKS


class ClusterConfig(_Strict):
    name: Name
    kind: Literal["pacemaker", "corosync"] = "pacemaker"
    nodes: tuple[NodeConfig, ...] = Field(min_length=1)
    ssh_user: Name = DEFAULT_SSH_USER
    ssh_key: Path | None = None
    known_hosts: Path = DEFAULT_KNOWN_HOSTS
    sudo: bool = DEFAULT_SUDO
    vips: tuple[Name, ...] = ()
    everywhere: tuple[Name, ...] = ()
    alert_channel: str | None = None
    mention: str | None = None  # e.g. "<!subteam^S0123>" for critical incidents
    approvers: tuple[str, ...] = ()  # Slack user ids (U...) and user-group ids (S...)
    approvals_required: int = Field(1, ge=1, le=5)
    allow_self_approval: bool = False
    commands: Commands = Commands()
    templates: dict[str, Argv] = Field(default_factory=dict)  # remediation overrides by action

    @field_validator("nodes", mode="before")
    @classmethod
    def _host_strings(cls, value: Any) -> Any:
        """A bare host string means Pacemaker node name = host."""
        if isinstance(value, (list, tuple)):
            return [{"name": v, "host": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _unique_nodes(self) -> ClusterConfig:
        names = [n.name for n in self.nodes]
        if len(names) != len(set(names)):
            raise ValueError(f"duplicate node names in cluster {self.name}")
        return self

    @property
    def expectations(self) -> Expectations:
        return Expectations(vips=self.vips, everywhere=self.everywhere)

    def node(self, name: str) -> NodeConfig | None:
        return next((n for n in self.nodes if n.name == name), None)


_CONFIG_FILE: Path | None = None
DEFAULT_ALERT_CHANNEL = "alerts"  # where alerts go when neither the cluster nor the top level names one


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CLUSTERBOT_", env_nested_delimiter="__", extra="forbid", frozen=True,
        populate_by_name=True,
        # `CLUSTERBOT_ALERT_CHANNEL=` in an environment file means unset, not "" over the TOML value.
        env_ignore_empty=True,
        allow_inf_nan=False,  # an infinite timeout or window is a typo, never a wish
    )

    clusters: tuple[ClusterConfig, ...] = ()
    connect_timeout_s: float = Field(DEFAULT_CONNECT_TIMEOUT_S, gt=0, le=120)
    command_timeout_s: float = Field(15.0, gt=0, le=600)
    max_concurrency: int = Field(64, ge=1, le=1024)  # SSH sessions in flight across clusters
    poll_interval_s: float = Field(5.0, ge=0.2, le=3600)
    unreachable_after: int = Field(3, ge=1, le=100)  # failed polls before "unreachable" alerts
    poll_every_node: bool = Field(False, description=(
        "Watcher: ask every node's crm_mon on every poll. Off: between detailed polls one node a "
        "poll in turn (any change it shows brings a full poll at once); scales to many clusters."))
    detail_every: int = Field(6, ge=1, le=1000, description=(
        "Watcher: every Nth time a node is asked, its daemons and Corosync views are asked too "
        "(and always when its crm_mon answer changes)."))
    status_detail_max_age_s: float = Field(10.0, ge=0, le=3600, description=(
        "Status: a node's daemon and Corosync answers are reused up to this many seconds while "
        "its crm_mon answer is unchanged (the status shows their age); 0 asks them every time. "
        "crm_mon itself is always asked; remediation checks always ask everything."))
    alert_retry_max_s: float = Field(60.0, gt=0, le=3600)  # longest wait between alert retries
    # Two or more replicas: one leader runs the watcher and the deliverer (bot/leader.py has the
    # arithmetic: a leader cut off from the database stops within check + timeout, long before
    # the server frees its lock for a follower).
    leader_retry_s: float = Field(1.0, ge=0.1, le=60, description=(
        "A follower tries to take the leader lock this often (failover after a crash: at most this "
        "plus one poll)."))
    leader_check_s: float = Field(1.0, ge=0.1, le=60, description=(
        "The leader confirms it still holds the lock this often."))
    leader_timeout_s: float = Field(1.5, ge=0.1, le=60, description=(
        "The leader steps down (stops watching and posting) when a lock confirmation takes longer."))
    retention_days: float = Field(30.0, ge=1, le=3650, description=(
        "Delivered alert messages and resolved incidents older than this are deleted from the "
        "state database (hourly). The audit log is kept whole."))
    flap_limit: int = Field(4, ge=2, le=10000)  # toggles within flap_window_s that make "flapping"
    flap_window_s: float = Field(600.0, gt=0, description="The window flap_limit counts toggles in.")
    settle_s: float = Field(15.0, ge=0, le=600, description=(
        "Watcher: how long Pacemaker may still be acting after a node left or joined (or an "
        "approved fix ran). Derived findings (VIPs not one per node, a clone instance missing, "
        "a link down) are held that long and alerted only if they still hold; a recovery's tail "
        "and a fix's effects within it go to their threads. Keep it above poll_interval_s + 3 s "
        "(on the lab, links went down 2.8 s before the membership lost the node)."))
    state_dir: Path = Path("/var/lib/clusterbot")
    store_url: SecretStr | None = Field(None, description=(
        "PostgreSQL for the state instead of SQLite in state_dir: `postgresql://user@host:5432/db` "
        "(libpq URL; a password is better in ~/.pgpass or PGPASSWORD than here). Unset: SQLite."))
    alert_channel: str | None = None
    allowed_channels: tuple[str, ...] = ()
    approvers: tuple[str, ...] = ()
    approval_ttl_s: float = Field(900.0, gt=0)
    slack_api_url: str = "https://slack.com/api/"
    http_host: str = Field("0.0.0.0", description=(
        "Address both HTTP servers bind: the Slack port (HTTP mode; Slack must reach it, behind "
        "your TLS proxy) and metrics_port (/metrics, /healthz, /readyz, /push) in either mode."))
    http_port: int = Field(3000, ge=0, le=65535)
    metrics_port: int | None = Field(None, ge=0, le=65535)
    push_secret: SecretStr | None = None
    slack_bot_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("SLACK_BOT_TOKEN", "slack_bot_token"))
    slack_app_token: SecretStr | None = Field(
        None, validation_alias=AliasChoices("SLACK_APP_TOKEN", "slack_app_token"))
    slack_signing_secret: SecretStr | None = Field(
        None, validation_alias=AliasChoices("SLACK_SIGNING_SECRET", "slack_signing_secret"))

    SECRET_FIELDS: ClassVar[tuple[str, ...]] = (
        "slack_bot_token", "slack_app_token", "slack_signing_secret", "push_secret")

    @field_validator("store_url")
    @classmethod
    def _postgresql_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// URL (unset it to keep SQLite in state_dir)")
        return value

    @model_validator(mode="after")
    def _unique_clusters(self) -> Settings:
        names = [c.name for c in self.clusters]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate cluster names: {', '.join(dupes)}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if _CONFIG_FILE is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=_CONFIG_FILE))
        return tuple(sources)

    def cluster(self, name: str) -> ClusterConfig | None:
        return next((c for c in self.clusters if c.name == name), None)


def load_settings(path: Path | str | None = None, *, need_clusters: bool = False,
                  **overrides: Any) -> Settings:
    """Build Settings from a TOML file (`path`, else $CLUSTERBOT_CONFIG, else DEFAULT_CONFIG if it
    exists) plus the environment.

    Every mistake becomes a ConfigError with one line per problem, each naming its key.
    `need_clusters`: a command that watches or asks clusters refuses a config without any, and
    says which files it looked for.
    """
    global _CONFIG_FILE

    file = config_file(path)
    if file is not None and not file.is_file():
        named_by = "" if path else " (named by $CLUSTERBOT_CONFIG)"
        raise ConfigError(f"config file {file}{named_by} does not exist")
    _CONFIG_FILE = file
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_problems(exc, file)) from exc
    except ValueError as exc:  # TOML syntax errors arrive as ValueError subclasses
        raise ConfigError(f"{file}: {exc}".splitlines()[0]) from exc
    finally:
        _CONFIG_FILE = None
    if need_clusters and not settings.clusters:
        raise ConfigError(f"no clusters configured: add [[clusters]] to {file}" if file else
                          f"no config file: none given (--config, $CLUSTERBOT_CONFIG) and "
                          f"{DEFAULT_CONFIG} does not exist")
    return settings


def _problems(exc: ValidationError, file: Path | None) -> str:
    """One line per problem: a reader fixes them all in one go, not one per run. An error about
    a list whose item is itself wrong ("at least 1 item") only echoes the item's error."""
    errors = exc.errors()
    locs = [tuple(e["loc"]) for e in errors]
    causes = [e for e, loc in zip(errors, locs, strict=True)
              if not any(len(other) > len(loc) and other[:len(loc)] == loc for other in locs)]
    return "\n".join(_one_line(error, file) for error in causes)


def _one_line(error: Any, file: Path | None) -> str:
    loc = ".".join(str(p) for p in error["loc"]) or "(top level)"
    env = _env_source(str(error["loc"][0])) if error["loc"] else None
    where = f"environment {env}: " if env else f"{file}: " if file else ""
    msg = _unknown_key(error["loc"]) if error["type"] == "extra_forbidden" else error["msg"]
    return f"{where}{loc}: {msg}"


def _unknown_key(loc: tuple[str | int, ...]) -> str:
    known = _keys_at(loc[:-1])
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    return f"unknown key; did you mean {close[0]!r}?" if close else "unknown key"


def _keys_at(path: tuple[str | int, ...]) -> list[str]:
    """The keys the model at `path` (e.g. ("clusters", 0, "nodes", 1)) accepts."""
    model: type[BaseModel] | None = Settings
    for part in path:
        if isinstance(part, int):
            continue  # an index into a list of the same model
        field = model.model_fields.get(part) if model is not None else None
        model = _model_in(field.annotation) if field is not None else None
    return list(model.model_fields) if model is not None else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model inside `tuple[M, ...]`, `M | None` and the like."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (tuple, list, typing.Union, types.UnionType, Annotated):
        return next((m for a in typing.get_args(annotation) if (m := _model_in(a)) is not None), None)
    return None
def misspelt_environment() -> list[str]:
    """CLUSTERBOT_* variables that are not settings but nearly name one (ignored, so the value
    meant never applies). Not a load error like a file key: other tools share the prefix
    (CLUSTERBOT_ALERT_CONFIG, the tests' switches); only a close miss is reported."""
    names = sorted(f"CLUSTERBOT_{name.upper()}" for name in Settings.model_fields)
    misses = []
    for var in sorted(os.environ):
        base = var.upper().split("__")[0]  # CLUSTERBOT_CLUSTERS__0__NAME sets `clusters`
        if not base.startswith("CLUSTERBOT_") or base in names:
            continue
        close = difflib.get_close_matches(base.removeprefix("CLUSTERBOT_"),
                                          [n.removeprefix("CLUSTERBOT_") for n in names], n=1, cutoff=0.8)
        if close:
            misses.append(f"environment {var} is not a setting and is ignored; did you mean "
                          f"CLUSTERBOT_{close[0]}?")
    return misses


def _env_source(key: str) -> str | None:
    """The environment variable that set `key`, if one did (it wins over the file): the error
    must send the reader to it, not to a file that may not even have the key."""
    names = {f"CLUSTERBOT_{key}".upper()}
    if key.upper().startswith("SLACK_"):
        names.add(key.upper())  # SLACK_BOT_TOKEN and the others read without the prefix
    return next((n for n, v in os.environ.items() if v and (
        n.upper() in names or n.upper().startswith(f"CLUSTERBOT_{key.upper()}__"))), None)
