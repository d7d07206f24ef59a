"""Tester-found defects (round 4): each test reproduces one report and fails without its fix."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeopt.cli import main


@pytest.mark.parametrize("url", ["sqlite:////nonexistent/dir/x.db", "postgresql://u:p@127.0.0.1:1/db"])
def test_search_bad_storage_fails_before_any_work(url, tmp_path, capsys, digits_cnn_path):
    """A storage that cannot be opened: exit 2 in one line, nothing written in --out, no lock left."""
    if url.startswith("postgresql"):
        pytest.importorskip("psycopg")
    out = tmp_path / "R"
    code = main(["search", str(digits_cnn_path), "-d", "digits", "--trials", "1", "--storage", url,
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert "cannot open the search storage" in err and "Traceback" not in err
    assert ":p@" not in err  # the password is redacted
    assert not out.exists()
