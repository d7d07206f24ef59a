"""The import rules of ARCHITECTURE.md, checked on the source (ast): every import statement,
including the lazy ones inside functions."""
import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
CORE = ("edgeopt.core", "edgeopt.errors", "edgeopt.fsutil")
CLI_LAYER = ("edgeopt.cli", "edgeopt.commands", "edgeopt.demo", "edgeopt.report")

# Imports that break a rule today, each with the change that removes it. The test also fails when
# an entry is no longer needed, so this list can only shrink.
KNOWN = {
    ("edgeopt.compare", "rich"): "compare's table rendering moves to report (issue 9, core-b)",
    ("edgeopt.runtimes.litert", "edgeopt.convert"): "quiet_fds moves to edgeopt.core",
    ("edgeopt.runtimes.tflm", "edgeopt.measure.tflm"): "the TFLM session moves into runtimes.tflm",
}


def _modules():
    for path in sorted((SRC / "edgeopt").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
    return out


def _under(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def violations() -> dict[tuple[str, str], str]:
    found = {}
    for module, path in _modules():
        for imp in _imports(path):
            if _under(module, ("edgeopt.techniques",)) and _under(imp, ("edgeopt.runtimes", "edgeopt.measure",
                                                                         "edgeopt.engine", "edgeopt.report")):
                found[(module, imp)] = "techniques never import runtimes, measure, engine or report"
            if _under(module, ("edgeopt.runtimes",)) and _under(imp, ("edgeopt",)) and \
                    not _under(imp, CORE + ("edgeopt.runtimes",)):
                found[(module, imp)] = "runtimes import only the core"
            if _under(module, ("edgeopt.core",)) and _under(imp, ("edgeopt",)) and \
                    not _under(imp, ("edgeopt.core", "edgeopt.errors")):
                found[(module, imp)] = "the core imports only itself and errors"
            if _under(imp, ("rich", "typer")) and not _under(module, CLI_LAYER):
                found[(module, imp.split(".")[0])] = "only the CLI and report know rich/Typer"
    return found


def test_import_rules_hold():
    found = violations()
    new = {k: v for k, v in found.items() if k not in KNOWN}
    assert not new, "\n".join(f"{m} imports {i}: {why}" for (m, i), why in new.items())
    stale = [k for k in KNOWN if k not in found]
    assert not stale, f"no longer needed, remove from KNOWN: {stale}"


def test_the_checker_catches_a_broken_rule(tmp_path, monkeypatch):
    bad = tmp_path / "edgeopt" / "techniques"
    bad.mkdir(parents=True)
    (bad / "sneaky.py").write_text("def f():\n    from edgeopt.runtimes.litert import LiteRT\n")
    (tmp_path / "edgeopt" / "engine.py").write_text("import rich\n")
    monkeypatch.setattr(__import__(__name__), "SRC", tmp_path)
    assert set(violations()) == {("edgeopt.techniques.sneaky", "edgeopt.runtimes.litert"),
                                 ("edgeopt.engine", "rich")}
