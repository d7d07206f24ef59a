"""Errors that reach the user as one clear line and exit code 2."""


class UserError(Exception):
    """Bad input from the user: a missing file, a wrong shape, a bad option.

    The CLI prints ``error: <message>`` on one line and exits with code 2.
    The message must say what is wrong and, where possible, how to fix it.
    """

    exit_code = 2

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def one_line(e: BaseException | str, limit: int = 200) -> str:
    """An exception's message collapsed to one line of at most ``limit`` characters (its type
    name when the message is empty), for error lines and failure reasons."""
    text = " ".join(str(e).split())[:limit]
    return text or (type(e).__name__ if isinstance(e, BaseException) else "")


def yaml_error(path, exc: BaseException, what: str = "") -> UserError:
    """One line for a YAML parser error (PyYAML's ``MarkedYAMLError``): the file, the line and
    column of the problem (1-based) and the parser's whole short message, e.g.
    ``r.yaml: not valid YAML at line 4, column 8: expected ',' or ']', but got ':' (while parsing
    a flow sequence started at line 3, column 5)``."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    context, cmark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    started = ""
    if context:
        started = f" ({context}" + (f" started at line {cmark.line + 1}, column {cmark.column + 1}"
                                    if cmark is not None else "") + ")"
    detail = f"{problem}{started}" if problem else one_line(exc, 300)
    return UserError(f"{what}{path}: not valid YAML{where}: {detail}")
