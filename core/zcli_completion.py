"""``zcli completion bash|zsh``: a shell completion script made from the API list.

The script holds every API name and its parameters as they were when it was made
(``source <(zcli completion bash)`` in a shell's rc file makes it again at each
start): it completes the options, ``help`` and ``completion``, an API name, then the
API's parameters as ``name=`` (values are the user's).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from core.zcli import OUTPUTS

SHELLS = ("bash", "zsh")
OPTIONS = ("--config", "--no-start", "--output", "--help")
COMMANDS = ("help", "completion")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*")
"""API and parameter names; anything else is left out of the script (it is shell text)."""

BASH = r"""# zcli completion for bash: source <(zcli completion bash)
_zcli_apis="@APIS@"

_zcli_params() {
    case $1 in
@CASES@
    esac
}

_zcli() {
    local line=${COMP_LINE:0:COMP_POINT} cur api="" prev="" i
    local -a words
    read -ra words <<<"$line"
    if [[ $line == *[[:space:]] ]]; then
        cur=""
    else
        cur=${words[${#words[@]}-1]}
        unset 'words[${#words[@]}-1]'
    fi
    for ((i = 1; i < ${#words[@]}; i++)); do
        case ${words[i]} in
            --config|-o|--output) ((i++)) ;;
            -*) ;;
            *) api=${words[i]}; break ;;
        esac
    done
    ((${#words[@]} > 1)) && prev=${words[${#words[@]}-1]}
    COMPREPLY=()
    case $prev in
        -o|--output) COMPREPLY=($(compgen -W "@OUTPUTS@" -- "$cur")); return ;;
        --config) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    esac
    if [[ -z $api ]]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "@OPTIONS@" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "@COMMANDS@ $_zcli_apis" -- "$cur"))
        fi
        return
    fi
    case $api in
        help) ((i == ${#words[@]} - 1)) && COMPREPLY=($(compgen -W "$_zcli_apis" -- "$cur")) ;;
        completion) ((i == ${#words[@]} - 1)) && COMPREPLY=($(compgen -W "@SHELLS@" -- "$cur")) ;;
        *)
            [[ $cur == *=* ]] && return  # a value: the user's
            COMPREPLY=($(compgen -W "$(_zcli_params "$api")" -- "$cur"))
            compopt -o nospace 2>/dev/null
            ;;
    esac
}

complete -F _zcli zcli
"""

ZSH = r"""# zcli completion for zsh: source <(zcli completion zsh)  (after compinit)
typeset -gA _zcli_params
_zcli_params=(
@PAIRS@
)

_zcli() {
    local i api=""
    for ((i = 2; i < CURRENT; i++)); do
        case ${words[i]} in
            --config|-o|--output) ((i++)) ;;
            -*) ;;
            *) api=${words[i]}; break ;;
        esac
    done
    case ${words[CURRENT-1]} in
        -o|--output) compadd -- @OUTPUTS@; return ;;
        --config) _files; return ;;
    esac
    if [[ -z $api ]]; then
        if [[ $PREFIX == -* ]]; then
            compadd -- @OPTIONS@
        else
            compadd -- @COMMANDS@ ${(k)_zcli_params}
        fi
        return
    fi
    case $api in
        help) ((i == CURRENT - 1)) && compadd -- ${(k)_zcli_params} ;;
        completion) ((i == CURRENT - 1)) && compadd -- @SHELLS@ ;;
        *)
            [[ $PREFIX == *=* ]] && return  # a value: the user's
            compadd -S '' -- ${=_zcli_params[$api]}
            ;;
    esac
}

compdef _zcli zcli
"""


def script(shell: str, apis: Mapping[str, Sequence[str]]) -> str:
    """The completion script of ``shell`` for ``apis`` (API name -> its parameter names)."""
    words = {
        name: " ".join(f"{p}=" for p in params if _WORD.fullmatch(p))
        for name, params in sorted(apis.items())
        if _WORD.fullmatch(name)
    }
    if shell == "bash":
        text = BASH.replace("@APIS@", " ".join(words)).replace(
            "@CASES@", "\n".join(f'        {name}) echo "{ps}" ;;' for name, ps in words.items())
        )
    elif shell == "zsh":
        text = ZSH.replace("@PAIRS@", "\n".join(f"    {name} '{ps}'" for name, ps in words.items()))
    else:
        raise ValueError(f"no completion for shell {shell}")
    return (
        text.replace("@OUTPUTS@", " ".join(OUTPUTS))
        .replace("@OPTIONS@", " ".join(OPTIONS))
        .replace("@COMMANDS@", " ".join(COMMANDS))
        .replace("@SHELLS@", " ".join(SHELLS))
    )
