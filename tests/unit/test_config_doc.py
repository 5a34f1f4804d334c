"""The configuration reference is generated from the settings models and committed in sync."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot import config_doc
from bot.settings import ClusterConfig, Commands, NodeConfig, Settings

DOC = Path(__file__).parents[2] / "docs" / "configuration.md"
MODELS = {"Settings": Settings, "ClusterConfig": ClusterConfig, "NodeConfig": NodeConfig,
          "Commands": Commands}


def rows(text: str) -> dict[str, list[str]]:
    """{key: [env var, type, default, description]} from the generated tables."""
    out = {}
    for line in text.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            out[cells[0].strip("`")] = cells[1:]
    return out


def test_every_settings_field_is_documented() -> None:
    table = rows(config_doc.render())
    for name in Settings.model_fields:
        assert name in table, f"{name} missing from the reference"
    for name in ClusterConfig.model_fields:
        assert f"clusters[].{name}" in table
    for name in NodeConfig.model_fields:
        assert f"clusters[].nodes[].{name}" in table
    for name in Commands.model_fields:
        assert f"clusters[].commands.{name}" in table


def test_committed_reference_is_current() -> None:
    assert DOC.read_text(encoding="utf-8") == config_doc.render(), (
        "docs/configuration.md is stale: run `python -m bot.config_doc --output docs/configuration.md`")


def test_env_vars_types_and_defaults() -> None:
    table = rows(config_doc.render())
    assert table["poll_interval_s"][:3] == ["`CLUSTERBOT_POLL_INTERVAL_S`", "number (>= 0.2, <= 3600)",
                                            "`5.0`"]
    assert table["slack_bot_token"][0] == "`SLACK_BOT_TOKEN`"  # the alias, not CLUSTERBOT_...
    assert table["push_secret"][:3] == ["`CLUSTERBOT_PUSH_SECRET`", "secret, optional", "unset"]
    assert table["clusters[].name"][1:3] == ["name", "required"]
    assert table["clusters[].kind"][1] == '`"pacemaker"` or `"corosync"`'
    assert table["clusters[].commands.crm_mon"][2] == (
        '`["crm_mon", "--one-shot", "--inactive", "--output-as=xml"]`')
    assert table["clusters[].nodes[].port"][2] == "`22`"


def test_descriptions_come_from_field_then_comment_then_fallback() -> None:
    table = rows(config_doc.render())
    assert table["max_concurrency"][3] == "SSH sessions in flight across clusters."  # line comment
    assert table["state_dir"][3] == config_doc.FALLBACK[("Settings", "state_dir")]
    # `<` would start an HTML tag in rendered markdown
    assert "&lt;!subteam" in table["clusters[].mention"][3]


def test_fallback_descriptions_name_real_fields() -> None:
    stale = [f"{m}.{f}" for m, f in config_doc.FALLBACK if f not in MODELS[m].model_fields]
    assert stale == [], "config_doc.FALLBACK describes fields that no longer exist"


def test_main_prints_and_writes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert config_doc.main([]) == 0
    assert capsys.readouterr().out == config_doc.render()
    out = tmp_path / "c.md"
    assert config_doc.main(["--output", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == config_doc.render()
