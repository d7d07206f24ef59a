"""`edgeopt demo`: train the slide MLP (blobs2d) and a small CNN (Fashion-MNIST, or digits when it is
not installed), then profile, bench and optimize each into a run directory, and end with a short
search for a microcontroller (post-training steps only) that exports the winner's C array and
Arduino sketch."""
from __future__ import annotations

from pathlib import Path

from rich.console import Console

console = Console()

DEMO_RECIPES = ["dynamic", "float16", "int8"]
DEMO_TARGET = "arduino-nano-33-ble-sense"


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
    _settle_batchnorm(model, ds)
    return _save(model, out / f"{name.replace('-', '_')}_cnn.keras"), name


def _settle_batchnorm(model, ds) -> None:
    """After one or two epochs the BatchNorm moving statistics still lag the weights (momentum
    0.99): re-estimate them (the --quick Fashion-MNIST CNN scored 15% before, 63% after), and say
    when the model is still near chance, so nobody reads the tour's figures as a trained model's."""
    import numpy as np

    from edgeopt.techniques.finetune import recalibrate_batchnorm

    recalibrate_batchnorm(model, ds.x_train)
    acc = float(np.mean(np.argmax(model.predict(ds.x_val, verbose=0), axis=1) == ds.y_val))
    chance = 1.0 / ds.num_classes
    if acc < 3 * chance:
        console.print(f"[yellow]the CNN reached only {acc:.0%} validation accuracy (chance {chance:.0%}): "
                      "its figures show the tool, not a trained model; run without --quick[/]")


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

    from edgeopt import validate

    validate.output_dir(out)  # before any training
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
    _search(out, model_path, data, quick)
    return runs


def _search(out: Path, model_path: Path, data: str, quick: bool) -> Path:
    """A short post-training search of the CNN for a microcontroller; prints the winner and where its
    C array and sketch went. Returns the search's run directory."""
    from edgeopt import api

    console.rule(f"[bold]search: {model_path.stem} for {DEMO_TARGET}")
    limit = {"limit": 3000 if quick else 6000} if data == "fashion-mnist" else {}
    result = api.search(model_path, data, targets=[DEMO_TARGET], objectives=("latency", "size"),
                        time_budget=30 if quick else 60, trials=3 if quick else 6, training=False,
                        out=out / "search" / model_path.stem, runs=20,
                        progress=lambda line, snapshot: console.print(line, highlight=False, markup=False),
                        **limit)
    console.print(f"[bold]{result.targets[DEMO_TARGET].sentence}[/]", highlight=False)
    for path in result.exports.get(DEMO_TARGET, []):
        console.print(f"exported {path}", highlight=False)
    console.print(f"search history: edgeopt report {result.path}", highlight=False)
    return result.path


def _known(step: str) -> bool:
    from edgeopt.steps import _REGISTRY, load_all

    load_all()
    return step in _REGISTRY
