"""Command-line verbs built from plain functions with jsonargparse.

Each function's typed parameters and docstring become its options; ``bool`` parameters become flags
(``--strict`` / ``--no-strict``) rather than ``--strict true``. Used by ``pctalk``'s tool verbs and by the
``pctalk-data`` and ``pctalk-eval`` commands.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jsonargparse import ActionConfigFile, ActionYesNo, ArgumentParser

__all__ = ["Commands", "Verb", "dispatch", "run_commands", "usage"]

#: A verb's function, or a mapping of sub-verbs to functions (nested as deep as needed).
Commands = Callable[..., Any] | Mapping[str, Any]


@dataclass(frozen=True)
class Verb:
    """A top-level verb: one line of help and a function returning its commands (imported lazily). A ``raw`` verb's
    function receives the remaining arguments itself (for command lines jsonargparse cannot express)."""

    help: str
    commands: Callable[[], Commands]
    raw: bool = False


def _summary(fn: Callable[..., Any]) -> str:
    doc = inspect.getdoc(fn) or ""
    return doc.split("\n\n")[0].replace("\n", " ")


def _param_help(fn: Callable[..., Any]) -> dict[str, str]:
    try:
        import docstring_parser
    except ImportError:  # pragma: no cover - installed with jsonargparse[signatures]
        return {}
    return {p.arg_name: p.description or "" for p in docstring_parser.parse(inspect.getdoc(fn) or "").params}


def _function_parser(fn: Callable[..., Any], prog: str) -> ArgumentParser:
    parser = ArgumentParser(prog=prog, description=_summary(fn))
    parser.add_argument("--config", action=ActionConfigFile, help="a YAML file with these options")
    params = inspect.signature(fn).parameters
    bools = {n for n, p in params.items() if p.annotation in (bool, "bool")}
    # A function marked ``fn.positional = True`` takes its required parameters as positional arguments.
    parser.add_function_arguments(fn, as_group=False, skip=bools, as_positional=getattr(fn, "positional", False))
    _add_dash_aliases(parser)
    helps = _param_help(fn)
    for name in bools:
        default = params[name].default
        default = False if default is inspect.Parameter.empty else default
        flag = name.replace("_", "-")
        parser.add_argument(
            f"--{flag}",
            dest=name,
            action=ActionYesNo(no_prefix="no-"),
            default=default,
            help=f"{helps.get(name, '')} (--{flag} / --no-{flag}; default: {default})",
        )
    return parser


def _add_dash_aliases(parser: ArgumentParser) -> None:
    """Accept ``--split-file`` as well as ``--split_file`` (shell users expect dashes)."""
    for action in list(parser._actions):
        for option in list(action.option_strings):
            alias = option[:2] + option[2:].replace("_", "-")
            if option.startswith("--") and alias != option and alias not in parser._option_string_actions:
                action.option_strings.append(alias)
                parser._option_string_actions[alias] = action


def _build(commands: Commands, prog: str) -> ArgumentParser:
    if callable(commands) and not isinstance(commands, Mapping):
        return _function_parser(commands, prog)
    parser = ArgumentParser(prog=prog)
    subcommands = parser.add_subcommands(dest="_verb", required=True)
    for name, sub in commands.items():
        help_text = _summary(sub) if callable(sub) else ", ".join(sub)
        subcommands.add_subcommand(name, _build(sub, f"{prog} {name}"), help=help_text)
    return parser


def _call(commands: Commands, cfg: Mapping[str, Any]) -> Any:
    if callable(commands) and not isinstance(commands, Mapping):
        params = inspect.signature(commands).parameters
        return commands(**{k: v for k, v in cfg.items() if k in params})
    verb = cfg["_verb"]
    return _call(commands[verb], cfg[verb])


def run_commands(commands: Commands, args: Sequence[str], prog: str) -> int:
    """Parse ``args`` against ``commands`` and call the chosen function; an int it returns is the exit status."""
    parser = _build(commands, prog)
    cfg = parser.parse_args(list(args))
    try:
        cfg = parser.instantiate(cfg).as_dict()  # dataclass options check their values here
        cfg.pop("config", None)
        result = _call(commands, cfg)
    except _user_errors() as err:  # bad input or missing files: the message says what to do; no traceback
        if os.environ.get("PCTALK_DEBUG"):
            raise
        print(f"{prog}: error: {err}  (PCTALK_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 2
    return result if isinstance(result, int) else 0


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that report a problem with the user's input or files rather than a bug."""
    from pctalk.weights import CheckpointKeyError, MissingWeightsError, UnsafeCheckpointError

    errors: list[type[BaseException]] = [
        OSError,  # a full disk, a read-only folder, a path through a file: the message names the path
        FileNotFoundError,
        ValueError,
        KeyError,
        MissingWeightsError,
        CheckpointKeyError,
        UnsafeCheckpointError,
    ]
    try:
        from pctalk.audio.io import AudioLoadError, SilentAudioError
        from pctalk.data.schema import SchemaError
        from pctalk.keypoints.crop import FaceNotFoundError

        errors += [AudioLoadError, SilentAudioError, SchemaError, FaceNotFoundError]
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def usage(prog: str, sections: Mapping[str, Mapping[str, str]]) -> str:
    """A command's top-level help: its verbs grouped in sections, one line each."""
    names = [verb for verbs in sections.values() for verb in verbs] or [""]
    width = max(len(v) for v in names)
    lines = [f"usage: {prog} VERB [options]   ({prog} VERB --help for a verb's options)"]
    for title, verbs in sections.items():
        lines += ["", f"{title}:"]
        lines += [f"  {verb:<{width}}  {text}" for verb, text in verbs.items()] or ["  (none yet)"]
    return "\n".join(lines)


def dispatch(prog: str, verbs: Mapping[str, Verb], args: Sequence[str], help_text: str | None = None) -> int:
    """Run the verb named by ``args[0]``; print the help for ``-h`` / nothing / an unknown verb."""
    help_text = help_text or usage(prog, {"verbs": {name: v.help for name, v in verbs.items()}})
    if not args or args[0] in ("-h", "--help"):
        print(help_text)
        return 0 if args else 2
    if args[0] not in verbs:
        print(f"{prog}: unknown verb {args[0]!r}\n\n{help_text}", file=sys.stderr)
        return 2
    verb = verbs[args[0]]
    if verb.raw:
        return verb.commands()(list(args[1:]))
    return run_commands(verb.commands(), args[1:], prog=f"{prog} {args[0]}")
