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
