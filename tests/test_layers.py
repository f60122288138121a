"""The package's shape: layers that only look down, no hidden imports, small modules.

Layers, lowest first (docs/architecture.md): errors/stats -> buffers -> streaming -> media ->
audio -> models -> video -> live -> cli. A module may import its own layer or lower ones;
imports inside function bodies are allowed only for optional heavy dependencies, each with a
``# lazy:`` reason; transports never import model internals.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "livesense"
ORDER = ["base", "buffers", "streaming", "media", "audio", "models", "video", "live", "cli"]
BASE = {"errors", "stats", "__init__"}  # top-level modules on the ground floor
LAZY_OK = {"sounddevice", "matplotlib", "transformers", "scipy", "h5py", "termios", "tty"}
MAX_LINES = 470  # "about 450": the largest today are the reasoner and the protocol

Parsed = list[tuple[str, list[str], ast.AST]]


def parse_package(package: Path) -> Parsed:
    """(module name, source lines, syntax tree) of every module under ``package``."""
    out = []
    for path in sorted(p for p in package.rglob("*.py") if "__pycache__" not in p.parts):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        text = path.read_text()
        out.append((".".join(parts), text.splitlines(), ast.parse(text)))
    return out


def layer_of(module: str) -> int | None:
    """The rank of a ``livesense...`` module (None for other packages)."""
    parts = module.split(".")
    if parts[0] != "livesense":
        return None
    if len(parts) == 1 or parts[1] in BASE:
        return 0
    if parts[1] == "__main__":
        return ORDER.index("cli")
    return ORDER.index(parts[1]) if parts[1] in ORDER else None


def imports(tree: ast.AST) -> list[tuple[ast.stmt, str, bool]]:
    """(node, imported module, inside a function body) for every import statement."""
    out: list[tuple[ast.stmt, str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                out.extend((child, a.name, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                out.append((child, child.module, in_function))
            visit(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef))

    visit(tree, False)
    return out


def upward_imports(package: Path) -> list[str]:
    """Imports of a higher layer, anywhere in a module."""
    bad = []
    for name, _, tree in parse_package(package):
        own = layer_of(name)
        if own is None:
            bad.append(f"{name}: in no layer of {ORDER}")
            continue
        for node, imported, _ in imports(tree):
            other = layer_of(imported)
            if other is not None and other > own:
                bad.append(
                    f"{name}:{node.lineno} imports {imported} ({ORDER[other]} > {ORDER[own]})"
                )
    return bad


def hidden_imports(package: Path) -> list[str]:
    """Imports inside function bodies other than a heavy optional dependency with a reason."""
    bad = []
    for name, lines, tree in parse_package(package):
        for node, imported, in_function in imports(tree):
            if not in_function:
                continue
            here, k = lines[node.lineno - 1], node.lineno - 2
            while k >= 0 and lines[k].strip().startswith(("import ", "from ")):
                k -= 1  # a run of lazy imports shares the comment above it
            reason = "# lazy:" in here or (k >= 0 and lines[k].strip().startswith("# lazy:"))
            if imported.split(".")[0] not in LAZY_OK or not reason:
                bad.append(f"{name}:{node.lineno} {here.strip()}")
    return bad


def test_layers_only_look_down() -> None:
    bad = upward_imports(PACKAGE)
    assert not bad, "imports that run up the layers:\n" + "\n".join(bad)


def test_no_imports_inside_functions_but_lazy_heavy_dependencies() -> None:
    bad = hidden_imports(PACKAGE)
    assert not bad, (
        f"imports inside function bodies (allowed only for {sorted(LAZY_OK)}, with a "
        "'# lazy: reason'):\n" + "\n".join(bad)
    )


def test_models_and_transports_stay_apart() -> None:
    """models/ knows no sockets or sound cards; the server's transports no model internals."""
    bad = []
    for name, _, tree in parse_package(PACKAGE):
        for node, imported, _ in imports(tree):
            top = imported.split(".")[0]
            if name.startswith("livesense.models") and top in ("websockets", "sounddevice"):
                bad.append(f"{name}:{node.lineno} imports {imported}")
            if name.startswith("livesense.live.server") and imported.startswith("livesense.models"):
                bad.append(f"{name}:{node.lineno} imports {imported}")
    assert not bad, "\n".join(bad)


def test_modules_stay_small() -> None:
    big = [
        f"{n}: {len(lines)} lines"
        for n, lines, _ in parse_package(PACKAGE)
        if len(lines) > MAX_LINES
    ]
    assert not big, f"modules over {MAX_LINES} lines (split them by concept):\n" + "\n".join(big)


def test_the_cli_is_a_package() -> None:
    names = {name for name, _, _ in parse_package(PACKAGE)}
    assert not (PACKAGE / "cli.py").exists()
    assert {"livesense.cli", "livesense.cli.replay", "livesense.live.server.app"} <= names


@pytest.mark.parametrize(
    ("source", "check"),
    [
        ("from livesense.live.engines import Engines\n", upward_imports),
        ("def f():\n    from livesense.cli import main\n", upward_imports),  # hidden and up
        ("def f():\n    import json\n", hidden_imports),
        ("def f():\n    import scipy\n", hidden_imports),  # an allowed module, but no reason
    ],
)
def test_the_checks_can_fail(
    tmp_path: Path, source: str, check: Callable[[Path], list[str]]
) -> None:
    """A violation planted in a low layer of a copy of the package is caught; a clean copy
    passes."""
    fake = tmp_path / "livesense"
    (fake / "buffers").mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "buffers" / "__init__.py").write_text("")
    (fake / "buffers" / "planted.py").write_text(source)
    found = check(fake)
    assert found and all("planted" in line for line in found)
    (fake / "buffers" / "planted.py").write_text(
        "from livesense.errors import ConfigError\n\n\ndef f():\n    import scipy  # lazy: heavy\n"
    )
    assert check(fake) == []
