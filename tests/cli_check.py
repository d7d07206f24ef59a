"""A shared check for the CLI's bad-input contract."""
from edgeopt.cli import main


def one_error(argv, capsys) -> str:
    """Run the CLI on ``argv``; assert exit code 2, one plain ``error:`` line on stderr, nothing on
    stdout and no traceback; return the line."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and "internal error" not in err, err
    assert "\x1b" not in err and out == "", (err, out)
    return err
