"""Open a report in headless Chromium (Debian's ``chromium``) and watch what it does.

Used by the browser test and by benchmarks/report_screenshot.py. Talks the Chrome DevTools
protocol over a local WebSocket (websocket-client, a test dependency): console messages, uncaught
exceptions, every network request, whether the plots rendered, and a PNG screenshot.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

# No first-run UI, no background traffic of its own: any request seen comes from the page.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--mute-audio")


def chromium_path() -> str | None:
    """The Chromium executable on PATH (Debian: chromium), or None."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class PageReport:
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    plots: int = 0  # plot containers on the page
    rendered: int = 0  # of them drawn by plotly with at least one data point
    screenshot: bytes = b""  # PNG
    probe: object = None  # the value of the ``probe`` expression after the plots rendered

    @property
    def network_requests(self) -> list[str]:
        """Requests that would leave the file: everything but file: and data: URLs."""
        return [u for u in self.requests if not u.startswith(("file:", "data:"))]


class _Cdp:
    def __init__(self, ws_url: str):
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def close(self) -> None:
        self.ws.close()


def open_report(html_path: Path, *, width: int = 1280, height: int = 900, full_page: bool = False,
                probe: str | None = None, timeout_s: float = 60.0) -> PageReport:
    """Load ``html_path`` from file:// in headless Chromium; return what happened.

    ``probe``: a JavaScript expression evaluated once the plots rendered (its JSON value is kept).

    Raises RuntimeError when Chromium is missing or does not start."""
    exe = chromium_path()
    if exe is None:
        raise RuntimeError("chromium not found (Debian: apt-get install chromium)")
    profile = tempfile.mkdtemp(prefix="edgeopt-chromium-")
    proc = subprocess.Popen([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                             f"--window-size={width},{height}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        ws_url = _page_socket(Path(profile), proc, timeout_s)
        return _inspect(ws_url, Path(html_path), width, full_page, probe, timeout_s)
    finally:
        _stop(proc)
        _remove(Path(profile))


def _stop(proc: subprocess.Popen) -> None:
    """End Chromium and its helper processes (zygote, renderers, crash handler: its process group),
    which otherwise go on writing into the profile for a moment after the browser exits."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            continue
        time.sleep(0.2)  # helpers get the same signal; give them a moment before the group is killed


def _remove(profile: Path, attempts: int = 20) -> None:
    """Remove the throw-away profile; a file written late by a dying helper is retried, never raised."""
    for _ in range(attempts):
        shutil.rmtree(profile, ignore_errors=True)
        if not profile.exists():
            return
        time.sleep(0.1)


def _page_socket(profile: Path, proc: subprocess.Popen, timeout_s: float) -> str:
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout_s
    while not port_file.exists() or not port_file.read_text().strip():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("chromium did not start (no DevToolsActivePort)")
        time.sleep(0.1)
    port = port_file.read_text().split()[0]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as resp:
        targets = json.load(resp)
    return next(t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page")


def _inspect(ws_url: str, html_path: Path, width: int, full_page: bool, probe: str | None,
             timeout_s: float) -> PageReport:
    cdp = _Cdp(ws_url)
    try:
        for domain in ("Page", "Runtime", "Log", "Network"):
            cdp.call(f"{domain}.enable")
        cdp.call("Page.navigate", url=html_path.resolve().as_uri())
        count = "document.querySelectorAll('.plot').length"
        drawn = "document.querySelectorAll('.plot[data-rendered]').length"  # set once a data point is drawn
        deadline = time.monotonic() + timeout_s
        report = PageReport()
        while time.monotonic() < deadline:
            state = cdp.call("Runtime.evaluate", expression=f"[document.readyState, {count}, {drawn}]",
                             returnByValue=True)["result"].get("value") or ["loading", 0, 0]
            if state[0] == "complete" and state[2] >= state[1]:
                break
            time.sleep(0.2)
        report.plots, report.rendered = int(state[1]), int(state[2])
        if probe:
            report.probe = cdp.call("Runtime.evaluate", expression=probe, returnByValue=True)["result"].get("value")
        if full_page:
            h = cdp.call("Runtime.evaluate", expression="document.documentElement.scrollHeight",
                         returnByValue=True)["result"]["value"]
            cdp.call("Emulation.setDeviceMetricsOverride", width=width, height=int(h), deviceScaleFactor=1,
                     mobile=False)
            time.sleep(0.5)
        report.screenshot = base64.b64decode(cdp.call("Page.captureScreenshot", format="png")["data"])
        _collect(cdp.events, report)
        return report
    finally:
        cdp.close()


def _collect(events: list[dict], report: PageReport) -> None:
    for ev in events:
        method, p = ev.get("method"), ev.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            report.console_errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p["args"]))
        elif method == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            report.console_errors.append(d.get("exception", {}).get("description") or d.get("text", "exception"))
        elif method == "Log.entryAdded" and p["entry"].get("level") == "error":
            report.console_errors.append(p["entry"].get("text", ""))
        elif method == "Network.requestWillBeSent":
            report.requests.append(p["request"]["url"])


def is_blank(png: bytes) -> bool:
    """True when the image is (nearly) one colour: fewer than 16 colours or no contrast."""
    import io

    from PIL import Image, ImageStat

    img = Image.open(io.BytesIO(png)).convert("RGB")
    colours = img.getcolors(maxcolors=1 << 16)
    spread = max(ImageStat.Stat(img).stddev)
    return (colours is not None and len(colours) < 16) or spread < 2.0
