"""The configuration reference (docs/configuration.md), generated from bot/settings.py.

Owns the rendering only: keys, types, defaults and environment variables come from the
pydantic models themselves. A description comes from the field's `description=`, else from
the comment at the end of its line in bot/settings.py, else from FALLBACK below, so moving text
into `Field(description=...)` never changes the output's shape. tests/unit/test_config_doc.py
fails when the committed docs/configuration.md differs from what this module prints.

    python -m bot.config_doc                               # print it
    python -m bot.config_doc --output docs/configuration.md  # regenerate the file
"""

from __future__ import annotations

import argparse
import ast
import inspect
import io
import sys
import tokenize
import types
import typing
from collections.abc import Mapping, Sequence
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any, Final, Literal, get_args, get_origin

import annotated_types as at
from pydantic import AliasChoices, BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from bot import settings as settings_module
from bot.settings import NAME_PATTERN, ClusterConfig, Commands, NodeConfig, Settings

# Descriptions for fields that have neither `description=` nor a line comment yet.
FALLBACK: Final[Mapping[tuple[str, str], str]] = {
    ("Settings", "clusters"): "The clusters to watch: one `[[clusters]]` table each (below).",
    ("Settings", "connect_timeout_s"): "SSH connect timeout per node, in seconds.",
    ("Settings", "command_timeout_s"): "Timeout of one remote command (crm_mon, pcs, ...), in seconds.",
    ("Settings", "poll_interval_s"): "Seconds between two polls of a cluster (each wait jittered by 10%).",
    ("Settings", "flap_window_s"): "Window, in seconds, over which flap_limit toggles are counted.",
    ("Settings", "state_dir"): "Directory of the SQLite state (incidents, outbox, approvals, audit).",
    ("Settings", "alert_channel"): "Default Slack channel id for incidents (a cluster's own wins). `run` "
                                   "refuses to start while a cluster has neither.",
    ("Settings", "allowed_channels"): "Channel ids where chat commands are answered; empty: everywhere.",
    ("Settings", "approvers"): "Slack user (U...) and user-group (S...) ids who may approve fixes.",
    ("Settings", "approval_ttl_s"): "Seconds before a pending approval request expires.",
    ("Settings", "slack_api_url"): "Slack Web API base URL (tests point it at a fake Slack).",
    ("Settings", "http_port"): "HTTP mode: port for /slack/events; 0 picks a free port.",
    ("Settings", "metrics_port"): "Port for /metrics, /healthz, /readyz and /push; unset: not served "
                                  "separately.",
    ("Settings", "push_secret"): "Shared secret of the alert agents' signed /push requests; unset: no "
                                 "/push.",
    ("Settings", "slack_bot_token"): "Bot token (xoxb-...). Required to talk to Slack.",
    ("Settings", "slack_app_token"): "App-level token (xapp-...); when set, the bot uses Socket Mode.",
    ("Settings", "slack_signing_secret"): "Signing secret; verifies HTTP-mode requests from Slack.",
    ("ClusterConfig", "name"): "The cluster's name in chat and alerts.",
    ("ClusterConfig", "kind"): "What to query: a Pacemaker cluster or a bare Corosync membership.",
    ("ClusterConfig", "nodes"): "The nodes: a host string (node name = host) or a `{ name, host, port }` "
                                "table.",
    ("ClusterConfig", "ssh_user"): "SSH login on every node.",
    ("ClusterConfig", "ssh_key"): "Private key file of ssh_user; needed to connect (no agent, no ~/.ssh).",
    ("ClusterConfig", "known_hosts"): "known_hosts file pinning the nodes' host keys.",
    ("ClusterConfig", "sudo"): "Run every command as `sudo -n ...` (see deploy/sudoers.d/clusterbot).",
    ("ClusterConfig", "vips"): "VIP resources, expected spread one per node.",
    ("ClusterConfig", "everywhere"): "Clones that must run on every online node.",
    ("ClusterConfig", "alert_channel"): "Slack channel id for this cluster's incidents; unset: the "
                                        "top-level `alert_channel`.",
    ("ClusterConfig", "approvals_required"): "Distinct approvals a fix needs.",
    ("ClusterConfig", "allow_self_approval"): "Whether a requester may approve their own request.",
    ("ClusterConfig", "commands"): "The read commands (`[clusters.commands]`, below).",
    ("NodeConfig", "host"): "Host name or address to SSH to.",
    ("NodeConfig", "port"): "SSH port.",
    ("Commands", "crm_mon"): "Cluster status as XML (Pacemaker 2.0.3 and later).",
    ("Commands", "crm_mon_legacy"): "Cluster status as XML for older Pacemaker (no --output-as).",
    ("Commands", "daemons"): "Daemon states: one `systemctl is-active` line per unit.",
    ("Commands", "version"): "Pacemaker version.",
    ("Commands", "quorum"): "Corosync quorum and membership; Proxmox VE: `[\"pvecm\", \"status\"]`.",
    ("Commands", "links"): "Corosync link (ring) status.",
}

INTRO: Final = """\
# Configuration reference

<!-- Generated by `python -m bot.config_doc --output docs/configuration.md` from bot/settings.py.
     Do not edit by hand: tests/unit/test_config_doc.py fails when this file and the code differ. -->

clusterbot reads one TOML file (`--config FILE`, else `$CLUSTERBOT_CONFIG`, else
`/etc/clusterbot/clusterbot.toml` if it exists); see deploy/clusterbot.example.toml. Top-level
keys can be overridden by environment variables (the *env var* column; lists as JSON, e.g.
`CLUSTERBOT_APPROVERS='["U0123"]'`). Slack secrets use Slack's conventional names.
Keep secrets in the environment, not in the file.

A *name* (clusters, nodes, resources) is 1 to 63 characters: letters, digits and `. _ : -`,
starting with a letter or digit.
"""

_SECTIONS: Final[tuple[tuple[str, type[BaseModel], str, str], ...]] = (
    ("Top-level keys", Settings, "", ""),
    ("`[[clusters]]`", ClusterConfig, "clusters[].", "One table per watched cluster."),
    ("`nodes` entries", NodeConfig, "clusters[].nodes[].",
     "Each entry of a cluster's `nodes`: a string (name = host) or a table."),
    ("`[clusters.commands]`", Commands, "clusters[].commands.",
     "The read commands run on every node, as argv lists (never through a shell). "
     "Keep them in step with deploy/sudoers.d/clusterbot."),
)
_HEADER: Final = "| key | env var | type | default | description |\n|---|---|---|---|---|"


# ---------------------------------------------------------------- rendering


def render() -> str:
    """The whole reference, as committed in docs/configuration.md."""
    parts = [INTRO]
    for title, model, prefix, blurb in _SECTIONS:
        parts.append(f"## {title}\n")
        if blurb:
            parts.append(f"{blurb}\n")
        rows = [_row(model, name, field, prefix) for name, field in model.model_fields.items()]
        parts.append("\n".join([_HEADER, *rows]) + "\n")
    return "\n".join(parts)


def _row(model: type[BaseModel], name: str, field: FieldInfo, prefix: str) -> str:
    cells = (f"`{prefix}{name}`", env_var(model, name, field), type_text(field),
             default_text(field), description(model, name, field))
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def env_var(model: type[BaseModel], name: str, field: FieldInfo) -> str:
    """The environment variable for a top-level key; nested keys have none of their own."""
    if model is not Settings:
        return "—"
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        alias = next((c for c in alias.choices if isinstance(c, str)), None)
    if isinstance(alias, str):
        return f"`{alias.upper()}`"
    prefix = str(Settings.model_config.get("env_prefix", ""))
    return f"`{prefix}{name}`".upper()


def description(model: type[BaseModel], name: str, field: FieldInfo) -> str:
    text = field.description or _comments(model.__name__).get(name) or FALLBACK.get((model.__name__, name))
    # Escaped: a bare <!subteam^S0123> would read as an HTML tag and vanish from the page.
    return (text or "").strip().replace("<", "&lt;").replace(">", "&gt;")


# ---------------------------------------------------------------- types


def type_text(field: FieldInfo) -> str:
    text = "name" if _is_name(field.metadata) else _type_name(field.annotation)
    limits = _limits(field.metadata)
    return f"{text} ({limits})" if limits else text


def _type_name(tp: Any) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if origin is typing.Annotated:
        return "name" if _is_name(args[1:]) else _type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        inner = " or ".join(_type_name(a) for a in rest)
        return f"{inner}, optional" if len(rest) < len(args) else inner
    if origin is Literal:
        return " or ".join(f'`"{a}"`' if isinstance(a, str) else f"`{a}`" for a in args)
    if origin is tuple:
        return _sequence_name(args)
    if origin is dict:
        return "table of " + _type_name(args[1]).replace("list of", "lists of", 1)
    return _SIMPLE.get(tp) or _model_name(tp)


def _sequence_name(args: tuple[Any, ...]) -> str:
    item = args[0] if args else Any
    return f"list of {_type_name(item)}s"


def _model_name(tp: Any) -> str:
    names = {ClusterConfig: "cluster table", NodeConfig: "node", Commands: "table"}
    if tp in names:
        return names[tp]
    if isinstance(tp, type) and issubclass(tp, Enum):
        return " or ".join(f'`"{m.value}"`' for m in tp)
    return getattr(tp, "__name__", str(tp))


def _is_name(metadata: Sequence[Any]) -> bool:
    """A `Name` (bot.settings): a str constrained to NAME_PATTERN."""
    inner = [x for m in metadata for x in (getattr(m, "metadata", None) or [m])]
    return any(getattr(m, "pattern", None) == NAME_PATTERN for m in inner)


_SIMPLE: Final[Mapping[Any, str]] = {
    str: "string", int: "integer", float: "number", bool: "boolean", Path: "path", SecretStr: "secret",
}


def _limits(metadata: Sequence[Any]) -> str:
    out: list[str] = []
    for m in metadata:
        for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            value = getattr(m, attr, None)
            if isinstance(m, (at.Gt, at.Ge, at.Lt, at.Le)) and value is not None:
                out.append(f"{sign} {value}")
        if isinstance(m, at.MinLen) and m.min_length:
            out.append(f"at least {m.min_length}")
        if isinstance(m, at.MaxLen):
            out.append(f"at most {m.max_length} characters")
    return ", ".join(out)


# ---------------------------------------------------------------- defaults


def default_text(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return "see below"
    return f"`{_toml(value)}`" if value is not None else "unset"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, Path)):
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return str(value)


# ---------------------------------------------------------------- comments in bot/settings.py


@cache
def _all_comments() -> dict[str, dict[str, str]]:
    """{class name: {field: the comment(s) on its lines}}, read from bot/settings.py."""
    source = inspect.getsource(settings_module)
    by_line: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            by_line[tok.start[0]] = tok.string.lstrip("#").strip()
    found: dict[str, dict[str, str]] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef):
            found[node.name] = {
                stmt.target.id: " ".join(by_line[n] for n in range(stmt.lineno, (stmt.end_lineno or 0) + 1)
                                         if n in by_line)
                for stmt in node.body
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)}
    return found


def _comments(model: str) -> dict[str, str]:
    return {k: _sentence(v) for k, v in _all_comments().get(model, {}).items() if v}


def _sentence(text: str) -> str:
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", ")")) else text + "."


# ---------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.config_doc", description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, help="write here instead of stdout")
    args = parser.parse_args(argv)
    text = render()
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
