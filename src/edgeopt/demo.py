"""`edgeopt demo`: train the slide MLP (blobs2d) and a small CNN (Fashion-MNIST, or digits when it is
not installed), then profile, bench and optimize each into a run directory."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console

console = Console()

DEMO_RECIPES = ["dynamic", "float16", "int8"]


def _train_mlp(out: Path, quick: bool) -> tuple[Path, str]:
    import keras

    from edgeopt.data import load_data
    from edgeopt.zoo import compile_classifier, slide_mlp

    keras.utils.set_random_seed(0)
    ds = load_data("blobs2d")
    model = compile_classifier(slide_mlp(), lr=1e-2)
    model.fit(ds.x_train, ds.y_train, validation_data=(ds.x_val, ds.y_val), epochs=10 if quick else 30,
              batch_size=64, verbose=0)
    return _save(model, out / "slide_mlp.keras"), "blobs2d"


def _train_cnn(out: Path, quick: bool) -> tuple[Path, str]:
    import keras

    from edgeopt.data import fashion_mnist_available, load_data
    from edgeopt.zoo import compile_classifier, small_cnn

    keras.utils.set_random_seed(0)
    if fashion_mnist_available():
        name, ds = "fashion-mnist", load_data("fashion-mnist", limit=6000 if quick else None)
        width, epochs = 16, (1 if quick else 2)
    else:
        console.print("[yellow]Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist); "
                      "the demo uses digits[/]")
        name, ds = "digits", load_data("digits")
        width, epochs = 8, (5 if quick else 15)
    model = compile_classifier(small_cnn(ds.input_shape, ds.num_classes, width=width), lr=3e-3)
    model.fit(ds.x_train, ds.y_train, validation_data=(ds.x_val, ds.y_val), epochs=epochs,
              batch_size=64, verbose=0)
    return _save(model, out / f"{name.replace('-', '_')}_cnn.keras"), name


def _save(model, path: Path) -> Path:
    from edgeopt.fsutil import atomic_path

    with atomic_path(path) as tmp:  # keeps the .keras suffix Keras needs
        model.save(tmp)
    return path


def run_demo(out: Path, quick: bool = False) -> list[Path]:
    from edgeopt import api
    from edgeopt.fsutil import ensure_writable_dir
    from edgeopt.report.terminal import print_bench, print_profile, print_run, progress_bar
    from edgeopt.engine.store import load_run

    out = ensure_writable_dir(Path(out))
    runs = []
    recipes = [r for r in DEMO_RECIPES if _known(r)]
    for title, trainer in (("slide MLP on blobs2d", _train_mlp), ("small CNN", _train_cnn)):
        console.rule(f"[bold]{title}")
        with console.status("training..."):
            model_path, data = trainer(out / "models", quick)
        console.print(f"trained {model_path}")
        print_profile(api.profile(model_path))
        print_bench(api.bench(model_path, data, runs=50 if quick else 200))
        with progress_bar() as (log, step):
            run_path = api.optimize(model_path, data, recipes=recipes, out=out / model_path.stem,
                                    runs=50 if quick else 200, log=log, progress=step).path
        print_run(load_run(run_path), run_path)
        runs.append(run_path)
    return runs


def _known(step: str) -> bool:
    from edgeopt.steps import _REGISTRY, load_all

    load_all()
    return step in _REGISTRY
