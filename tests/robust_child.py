"""A child process for tests/test_robust.py: optimizes a model into a run directory through the
engine (``engine.driver``), as ``edgeopt optimize`` does, so the tests can kill it (see
``engine.faults``) or run two at once.

    python tests/robust_child.py MODEL DATA OUT RECIPE [RECIPE...]   (options: prune.epochs=1)
"""
import sys
from pathlib import Path

from edgeopt.api import plan_recipes, prepare
from edgeopt.engine.driver import make_header, optimize_run
from edgeopt.errors import UserError

OPTIONS = {"prune.epochs": 1, "prune.report_size": False}


def main(model: str, data: str, out: str, *recipes: str) -> int:
    try:
        chains, options = plan_recipes(list(recipes), OPTIONS)
        m, ds, warnings = prepare(model, data)
        header = make_header(m, ds, Path(out), chains, options, 1, 5, warnings)
        optimize_run(m, ds, chains, out=Path(out), header=header, runs=5, log=lambda s: print(s, flush=True))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
