"""The waste-sorter app: classify a photo with the chosen .tflite in LiteRT and say which motors move.

    python examples/waste_sorter/app.py classify PHOTO [--config runs/examples/waste_sorter/config.yaml]
    python examples/waste_sorter/app.py serve [--port 8000] [--config ...]   # http://127.0.0.1:8000

Prints / shows: waste type, subclass, confidence, motor 1 ON/OFF, motor 2 ON/OFF. The class-to-motor
mapping lives in the YAML config (see config.yaml beside this file). The web page only listens on
127.0.0.1 and uses nothing beyond the standard library's http.server.
"""
from __future__ import annotations

import argparse
import html
import io
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import numpy as np

DEFAULT_CONFIG = Path("runs/examples/waste_sorter/config.yaml")
MAX_UPLOAD_BYTES = 8 * 1024 * 1024


class ConfigError(Exception):
    """A config or input problem, reported as one line."""


def load_config(path: Path) -> dict:
    """Read and check the YAML config; the model path is resolved relative to the config file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config not found: {path} (run examples/waste_sorter/run.py first, or pass --config)")
    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(cfg, dict) or not {"model", "classes", "motors"} <= set(cfg):
        raise ConfigError(f"{path}: needs the keys model, classes and motors")
    model = (path.parent / cfg["model"]).resolve()
    if not model.is_file():
        raise ConfigError(f"{path}: model {model} not found")
    classes = cfg["classes"]
    if not isinstance(classes, list) or not all(isinstance(c, dict) and {"subclass", "type"} <= set(c)
                                                for c in classes):
        raise ConfigError(f"{path}: classes must be a list of {{subclass: ..., type: ...}}")
    motors = cfg["motors"]
    for c in classes:
        if c["type"] not in motors and c["subclass"] not in motors:
            raise ConfigError(f"{path}: no motor setting for {c['subclass']} or its type {c['type']}")
    for name, state in motors.items():
        if not isinstance(state, dict) or not all(isinstance(state.get(m), bool) for m in ("motor_1", "motor_2")):
            raise ConfigError(f"{path}: motors.{name} needs motor_1 and motor_2 set to true or false")
    threshold = cfg.get("min_confidence", 0.0)
    if not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
        raise ConfigError(f"{path}: min_confidence must be a number from 0 to 1")
    return {**cfg, "model": model, "min_confidence": float(threshold), "config_path": path}


class Sorter:
    """One LiteRT interpreter for the configured model; classify() is thread-safe."""

    def __init__(self, config: dict):
        from ai_edge_litert.interpreter import Interpreter

        self.config = config
        self.interp = Interpreter(model_path=str(config["model"]), num_threads=1)
        self.interp.allocate_tensors()
        self.inp = self.interp.get_input_details()[0]
        self.out = self.interp.get_output_details()[0]
        n_out = int(self.out["shape"][-1])
        if n_out != len(config["classes"]):
            raise ConfigError(f"the model outputs {n_out} classes but the config lists {len(config['classes'])}")
        self.lock = threading.Lock()

    def _pixels(self, image_bytes: bytes) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        try:
            img = Image.open(io.BytesIO(image_bytes)).convert("RGB")
        except (UnidentifiedImageError, OSError):
            raise ConfigError("not an image Pillow can read (use PNG or JPEG)") from None
        h, w = int(self.inp["shape"][1]), int(self.inp["shape"][2])
        x = np.asarray(img.resize((w, h), Image.BILINEAR), np.float32)[None] / 255.0
        if self.inp["dtype"] != np.float32:
            scale, zp = self.inp["quantization"]
            info = np.iinfo(self.inp["dtype"])
            x = np.clip(np.round(x / scale + zp), info.min, info.max).astype(self.inp["dtype"])
        return x

    def classify(self, image_bytes: bytes) -> dict:
        """-> {waste_type, subclass, confidence, motor_1, motor_2} (motors as booleans)."""
        x = self._pixels(image_bytes)
        with self.lock:
            self.interp.set_tensor(self.inp["index"], x)
            self.interp.invoke()
            y = self.interp.get_tensor(self.out["index"])[0]
        if self.out["dtype"] != np.float32:
            scale, zp = self.out["quantization"]
            y = (y.astype(np.float32) - zp) * scale
        k = int(np.argmax(y))
        cls = self.config["classes"][k]
        confidence = float(y[k])
        motors = self.config["motors"]
        state = motors.get(cls["subclass"], motors.get(cls["type"]))
        sure = confidence >= self.config["min_confidence"]
        return {"waste_type": cls["type"] if sure else "uncertain", "subclass": cls["subclass"],
                "confidence": round(confidence, 4), "motor_1": bool(state["motor_1"] and sure),
                "motor_2": bool(state["motor_2"] and sure)}


def describe(result: dict) -> str:
    on = {True: "ON", False: "OFF"}
    return (f"waste type: {result['waste_type']}, subclass: {result['subclass']}, confidence: "
            f"{result['confidence']:.2f}, motor 1: {on[result['motor_1']]}, motor 2: {on[result['motor_2']]}")


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Waste sorter</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 46em; color: #222; }}
table {{ border-collapse: collapse; margin-top: 1em; }} td, th {{ border: 1px solid #ccc; padding: .35em .8em; text-align: left; }}
.on {{ color: #fff; background: #2a8a3a; font-weight: bold; }} .off {{ color: #555; background: #eee; }}
img.item {{ width: 144px; height: 144px; image-rendering: pixelated; border: 1px solid #999; }}
.row {{ display: flex; gap: 2em; align-items: flex-start; }} small {{ color: #666; }}
</style></head><body>
<h1>Waste sorter</h1>
<p>Model <code>{model}</code>, run in LiteRT. Choose a photo of one item:
<input type="file" id="photo" accept="image/*"></p>
<div class="row"><div>{image}</div><div id="result">{result}</div></div>
<p><small>Samples: {samples}</small></p>
<script>
const on = v => `<td class="${{v ? 'on' : 'off'}}">${{v ? 'ON' : 'OFF'}}</td>`;
function show(r) {{
  document.getElementById('result').innerHTML = `<table>
  <tr><th>waste type</th><td id="waste-type">${{r.waste_type}}</td></tr>
  <tr><th>subclass</th><td id="subclass">${{r.subclass}}</td></tr>
  <tr><th>confidence</th><td id="confidence">${{r.confidence.toFixed(2)}}</td></tr>
  <tr><th>motor 1</th>${{on(r.motor_1)}}</tr><tr><th>motor 2</th>${{on(r.motor_2)}}</tr></table>`;
}}
document.getElementById('photo').addEventListener('change', async ev => {{
  const file = ev.target.files[0]; if (!file) return;
  const resp = await fetch('/api/classify', {{method: 'POST', body: file}});
  const body = await resp.json();
  if (!resp.ok) {{ document.getElementById('result').textContent = 'error: ' + body.error; return; }}
  show(body);
}});
const initial = {initial};
if (initial) show(initial);
</script></body></html>
"""


def _samples_dir(config: dict) -> Path:
    return config["config_path"].parent / "samples"


def page(sorter: Sorter, sample: str | None) -> tuple[int, str]:
    folder = _samples_dir(sorter.config)
    names = sorted(p.name for p in folder.glob("*.png")) if folder.is_dir() else []
    links = " ".join(f'<a href="/?sample={html.escape(n)}">{html.escape(n)}</a>' for n in names) or "none"
    image, initial, status, message = "", "null", 200, ""
    if sample is not None:
        if sample not in names:
            status, message = 404, f"<p>error: no sample named {html.escape(sample)}</p>"
        else:
            result = sorter.classify((folder / sample).read_bytes())
            image = f'<img class="item" src="/samples/{html.escape(sample)}" alt="{html.escape(sample)}">'
            initial = json.dumps(result)
    return status, PAGE.format(model=html.escape(sorter.config["model"].name), image=image,
                               result=message, samples=links, initial=initial)


def make_handler(sorter: Sorter):
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, obj: dict) -> None:
            self._send(status, json.dumps(obj).encode(), "application/json")

        def do_GET(self):  # noqa: N802 (http.server's name)
            url = urlparse(self.path)
            if url.path == "/":
                sample = parse_qs(url.query).get("sample", [None])[0]
                status, text = page(sorter, sample)
                self._send(status, text.encode(), "text/html; charset=utf-8")
            elif url.path.startswith("/samples/"):
                name = Path(unquote(url.path[len("/samples/"):])).name
                path = _samples_dir(sorter.config) / name
                if path.suffix == ".png" and path.is_file():
                    self._send(200, path.read_bytes(), "image/png")
                else:
                    self._json(404, {"error": f"no sample {name}"})
            else:
                self._json(404, {"error": f"no page {url.path}"})

        def do_POST(self):  # noqa: N802
            if urlparse(self.path).path != "/api/classify":
                return self._json(404, {"error": "POST an image to /api/classify"})
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_UPLOAD_BYTES:
                return self._json(400, {"error": f"send one image of 1 byte to {MAX_UPLOAD_BYTES} bytes"})
            try:
                self._json(200, sorter.classify(self.rfile.read(length)))
            except ConfigError as exc:
                self._json(400, {"error": str(exc)})

        def log_message(self, *args):  # keep the terminal quiet
            pass

    return Handler


def make_server(sorter: Sorter, port: int = 8000) -> ThreadingHTTPServer:
    """An HTTP server on 127.0.0.1 (port 0 = any free port); call serve_forever() on it."""
    return ThreadingHTTPServer(("127.0.0.1", port), make_handler(sorter))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Waste sorter: classify a photo and drive two motors")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("classify", help="classify one photo and print the result")
    c.add_argument("photo", type=Path)
    s = sub.add_parser("serve", help="serve the web page on 127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    for p in (c, s):
        p.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
        p.add_argument("--json", action="store_true", help="(classify) print JSON")
    args = parser.parse_args(argv)
    try:
        if args.command == "classify" and not args.photo.is_file():
            raise ConfigError(f"photo not found: {args.photo}")
        sorter = Sorter(load_config(args.config))
        if args.command == "classify":
            result = sorter.classify(args.photo.read_bytes())
            print(json.dumps(result) if args.json else describe(result))
            return 0
        server = make_server(sorter, args.port)
    except OSError as exc:
        print(f"error: cannot listen on 127.0.0.1:{args.port} ({exc.strerror}); pick another --port", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"waste sorter on http://127.0.0.1:{server.server_address[1]}/  (Ctrl-C stops it)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
