"""`regbench completion bash|zsh`: a shell completion script generated from the parser itself,
so it never falls behind the commands and flags."""

from __future__ import annotations

import argparse

from regbench.cli.common import EXIT_OK
from regbench.errors import RegbenchError

_BASH = """# regbench completion for bash: eval "$(regbench completion bash)"
_regbench() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} cmd=${{COMP_WORDS[1]}} words
    if [ "$COMP_CWORD" -eq 1 ]; then
        words="{commands}"
    else
        case "$cmd" in
{cases}
        esac
    fi
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
    [[ $cur != -* ]] && COMPREPLY+=($(compgen -f -- "$cur"))
}}
complete -F _regbench regbench
"""


def options_by_command(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """Each subcommand's visible option strings."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    table = {}
    for name, command in sub.choices.items():
        table[name] = sorted(
            option
            for action in command._actions
            if action.help != argparse.SUPPRESS
            for option in action.option_strings
        )
    return table


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    if shell not in ("bash", "zsh"):
        raise RegbenchError(f"completion is generated for bash or zsh; got {shell!r}")
    table = options_by_command(parser)
    cases = "\n".join(
        f'            {name}) words="{" ".join(options)}" ;;' for name, options in table.items()
    )
    text = _BASH.format(commands=" ".join(table), cases=cases)
    if shell == "zsh":  # zsh runs bash completions through bashcompinit
        text = "autoload -U +X bashcompinit && bashcompinit\n" + text
    return text


def cmd_completion(args: argparse.Namespace) -> int:
    from regbench.cli import build_parser

    print(script(args.shell, build_parser()), end="")
    return EXIT_OK
