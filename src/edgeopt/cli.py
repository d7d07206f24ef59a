"""The edgeopt command line: parse, call the API, render. No heavy import at module top."""
from __future__ import annotations

import importlib
import json
import os
import sys

import typer

app = typer.Typer(
    name="edgeopt",
    help="Make trained models fit and run fast on edge devices, with measurements to choose by.\n\n"
         "Exit codes: 0 = everything requested is done; 1 = a variant, the baseline, a compare row or every "
         "trial of a search target failed (the table says which and why), or "
         "an internal error; 2 = bad input (one 'error:' line on stderr, checked before any work, nothing "
         "written); 130 = interrupted (finished variants are kept: re-run to resume).",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

COMMAND_MODULES = ["edgeopt.commands.core", "edgeopt.commands.hardware", "edgeopt.commands.compare", "edgeopt.commands.footprint", "edgeopt.commands.search"]


def _quiet_frameworks() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    import warnings

    warnings.filterwarnings("ignore")


def _register_commands() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # an optional command group that is not there
                continue
            raise
        module.register(app)


_register_commands()

_TYPE_METAVARS = {"integer": "N", "int": "N", "float": "NUMBER", "path": "PATH", "boolean": "BOOL"}


def command():
    """The click command tree of ``app`` with help that reads like a person wrote it: arguments as
    ``MODEL`` / ``[VARIANT]`` (no ``{model}`` or ``<path>``), options with a metavar (``--runs N``)."""
    from typer.core import TyperArgument

    cmd = typer.main.get_command(app)
    for sub in getattr(cmd, "commands", {}).values():
        for param in sub.params:
            if isinstance(param, TyperArgument):
                _plain_argument(param)
            elif not getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = _TYPE_METAVARS.get(_kind(param), "TEXT")
    return cmd


def _kind(param) -> str:
    """The value type of an option ("int", "path", ...): click's type when the parameter has been
    resolved, else the annotation typer keeps (Optional[...] and List[...] unwrapped)."""
    import typing

    if getattr(param, "type", None) is not None:
        return getattr(param.type, "name", "text").split()[0].lower()
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    for arg in typing.get_args(annotation) or (annotation,):
        if arg is not type(None) and arg is not None:
            return getattr(arg, "__name__", "text").lower()
    return "text"


def _plain_argument(param) -> None:
    name = (param.metavar or param.name).strip("[]").upper()
    param.metavar = name
    usage = name if param.required else f"[{name}]"
    param._usage_display_name = lambda: usage + ("..." if param.nargs != 1 else "")
    param.display_type_rich = lambda ctx: ""  # the help line shows the name, not "<path>"


def main(argv: list[str] | None = None) -> int:
    """Entry point: one clear line and exit code 2 for bad input, never a traceback."""
    from typer._click import exceptions as click  # typer 0.29 vendors click

    from edgeopt.errors import UserError

    _quiet_frameworks()
    try:
        code = command().main(args=argv, prog_name="edgeopt", standalone_mode=False)
    except UserError as e:
        _error(str(e))
        return e.exit_code
    except click.NoArgsIsHelpError as e:
        sys.stdout.write(e.ctx.get_help() + "\n")
        return 0
    except typer.Exit as e:
        return e.exit_code
    except click.UsageError as e:
        hint = f" (see: edgeopt {e.ctx.info_name if e.ctx and e.ctx.parent else ''} --help)".replace("  ", " ")
        _error(" ".join(e.format_message().split()) + hint)
        return 2
    except typer.Abort:
        _error("aborted")
        return 130
    except KeyboardInterrupt:
        _error("interrupted; finished variants are saved, re-run the same command to resume")
        return 130
    except Exception as e:  # a bug in edgeopt, not bad input: still one line unless debugging
        if os.environ.get("EDGEOPT_DEBUG"):
            raise
        _error(f"internal error: {type(e).__name__}: {' '.join(str(e).split())[:300]} "
               f"(set EDGEOPT_DEBUG=1 for a traceback)")
        return 1
    return code if isinstance(code, int) else 0


def _error(message: str) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()


def run_main() -> None:  # pragma: no cover - console script
    sys.exit(main())


def print_json(obj) -> None:
    from edgeopt.fsutil import _json_default

    sys.stdout.write(json.dumps(obj, indent=2, default=_json_default) + "\n")


if __name__ == "__main__":  # pragma: no cover
    run_main()
