"""Headless Chromium for the waste-sorter page: a screenshot, or the DOM after its scripts ran."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--virtual-time-budget=4000"]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _run(args: list[str], timeout: int = 60) -> subprocess.CompletedProcess:
    exe = chromium()
    if exe is None:
        raise FileNotFoundError("chromium not found; install with: apt-get install -y -q chromium")
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                              text=True, timeout=timeout, check=True)


def screenshot(url: str, path: Path, size: tuple[int, int] = (820, 380)) -> Path:
    _run([f"--screenshot={Path(path).resolve()}", f"--window-size={size[0]},{size[1]}", url])
    return Path(path)


def dump_dom(url: str) -> str:
    return _run(["--dump-dom", url]).stdout
