"""`/cluster help [COMMAND]`: generated from the command specs, so it cannot drift."""

from __future__ import annotations

from commands.common import text_reply
from commands.spec import ArgKind, ArgSpec, CommandSpec, Invocation, Reply, Services, UsageError

TOPIC = ArgSpec("command", ArgKind.WORD, "a command name", required=False)


async def run(inv: Invocation, services: Services) -> Reply:
    from commands import REGISTRY, lookup  # the registry imports this module

    if inv.args:
        spec = lookup(inv.args[0])
        if spec is None:
            raise UsageError(None, f"no command `{inv.args[0]}`; try `/cluster help`")
        return text_reply(f"`{spec.usage}`", *detail(spec), ephemeral=True)
    lines = [f"`{s.usage}`{' :lock:' if s.needs_approval else ''} — {s.help.split('. ')[0]}"
             for s in REGISTRY]
    return text_reply("clusterbot commands (:lock: = runs only after approval)", *lines,
                      ephemeral=True)


def detail(spec: CommandSpec) -> list[str]:
    lines = [spec.help]
    lines += [f"• `{a.name.upper()}`{'' if a.required else ' (optional)'}: {a.help}" for a in spec.args]
    if spec.needs_approval:
        lines.append(":lock: Posts a request in the channel; it runs only after an authorized "
                     "approver approves it in the thread.")
    return lines


SPEC = CommandSpec(name="help", help="Show the commands, or one command in detail.", args=(TOPIC,),
                   run=run)
