"""The edgeopt command line: parse, call the API, render. No heavy import at module top."""
from __future__ import annotations

import importlib
import json
import os
import sys

import typer

app = typer.Typer(
    name="edgeopt",
    help="Make trained models fit and run fast on edge devices, with measurements to choose by.",
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


def main(argv: list[str] | None = None) -> int:
    """Entry point: one clear line and exit code 2 for bad input, never a traceback."""
    from typer._click import exceptions as click  # typer 0.29 vendors click

    from edgeopt.errors import UserError

    _quiet_frameworks()
    try:
        code = app(args=argv, standalone_mode=False)
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
