"""CLI command groups. Each module defines ``register(app: typer.Typer)`` and keeps heavy imports
(tensorflow, keras, openvino) inside the command functions so `edgeopt --help` stays instant."""
