"""The layering holds at run time too: loading a config pulls in no HTTP stack, no database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_loading_the_shipped_config_imports_no_server_stack() -> None:
    """`probed.config` and the shipped file leave aiohttp, bcrypt and sqlite3 unimported."""
    code = (
        "import sys; from probed.config import load_config; load_config('probes.toml'); "
        "print(' '.join(m for m in ('aiohttp', 'bcrypt', 'sqlite3') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert (0, "", "") == (result.returncode, result.stderr, result.stdout.strip())


def test_starting_the_daemon_imports_no_module_only_a_rare_path_needs() -> None:
    """What ``probed run`` imports before ready leaves out ``ctypes`` (serverguard's
    ``malloc_trim`` after a connection flood), ``importlib.resources`` (the package's
    data files are read beside its modules: 0.49 MB of idle RSS and 5 ms of start) and
    ``decimal`` (0.57 MB: the SLO allowance and the pages' rounding are done in integers),
    each deferred for its measured cost."""
    deferred = ("ctypes", "importlib.resources", "decimal")
    code = (  # without the console renderers structlog imports when present (dev tools only);
        # the deferred modules blocked, even if the interpreter imported one at its start (a
        # development venv's .pth files): an import of one fails
        f"import sys; sys.modules.update(dict.fromkeys({deferred!r})); "
        f"[delattr(sys.modules[p], c) for p, _, c in (m.rpartition('.') for m in {deferred!r}) "
        "if hasattr(sys.modules.get(p), c)]; "
        "sys.modules.update(rich=None, colorama=None, better_exceptions=None); "
        "import probed.cli, probed.daemon, probed.sdnotify"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert (0, "") == (result.returncode, result.stderr.strip()[-300:])


def test_the_probed_command_maps_no_cpp_runtime(tmp_path: Path) -> None:
    """``probed once`` (the daemon's imports, aiohttp's among them) runs on frozenlist's pure
    Python list: its compiled one maps the C++ runtime (libstdc++), 1.0 MB of idle RSS and 4
    ms of start, for the few lists of signal handlers aiohttp keeps."""
    config = tmp_path / "probes.toml"
    config.write_text(
        '[targets.app]\nbase_url = "http://127.0.0.1:9"\n'
        '[[probes]]\nname = "p"\nkind = "http"\ntarget = "app"\npath = "/"\n',
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if k != "FROZENLIST_NO_EXTENSIONS"}
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "probed", "once", "-c", str(config)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    imported = {
        line.rpartition("|")[2].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert {"aiohttp", "frozenlist"} <= imported, result.stderr[-300:]
    assert "frozenlist._frozenlist" not in imported


def test_config_models_build_their_checks_when_a_config_first_needs_them() -> None:
    """Each config model's checks are built when a config first needs them, not at import:
    after the import only the built-in playbooks' (they are read at import), and after
    loading the shipped file the sections it leaves out stay unbuilt."""
    code = """
import probed.config, probed.playbooks
from probed.model import Model

def models(cls):
    return [cls] + [sub for direct in cls.__subclasses__() for sub in models(direct)]

def built():
    return sorted({cls.__name__ for cls in models(Model)
        if cls.__module__.startswith("probed") and "_shape_" in cls.__dict__})

print(len([m for m in models(Model) if m.__module__.startswith("probed")]), built())
probed.config.load_config("probes.toml")
print("Config" in built(), "FleetConfig" in built())
"""
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert (0, "") == (result.returncode, result.stderr)
    imported, loaded = result.stdout.splitlines()
    assert int(imported.split()[0]) > 20
    assert imported.endswith(" ['PlaybookConfig']"), imported
    assert "True False" == loaded


def test_no_module_is_over_600_lines() -> None:
    """One room per job: a module that outgrows 600 lines has taken a second job."""
    long = {
        str(path.relative_to(ROOT)): lines
        for path in (ROOT / "probed").rglob("*.py")
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > 600
    }
    assert {} == long


def test_no_room_imports_another_rooms_private_module() -> None:
    """A ``_private`` module is imported only from inside its own package."""
    import grimp

    graph = grimp.build_graph("probed")
    offenders = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            package, _, leaf = imported.rpartition(".")
            private = leaf.startswith("_") and not leaf.startswith("__")
            if private and not module.startswith(package + "."):
                offenders.append(f"{module} -> {imported}")
    assert [] == offenders


def _third_party_imports(folder: str) -> set[str]:
    """Top-level names of the modules imported by the Python files under ``folder``."""
    import ast

    names: set[str] = set()
    for path in (ROOT / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    local = {p.stem for d in ("tests", "bench") for p in (ROOT / d).glob("*.py")} | {"probed"}
    stdlib = set(sys.stdlib_module_names)
    return {n for n in names if n not in stdlib and n not in local and n != "__future__"}


def _declared(*extras: str) -> set[str]:
    """The distributions pyproject.toml declares (runtime, plus the named extras)."""
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    return {_normal(re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0]) for r in requirements}


def _normal(name: str) -> str:
    """A distribution name as PEP 503 compares it."""
    return name.lower().replace("_", "-").replace(".", "-")


def _distributions(modules: set[str]) -> dict[str, set[str]]:
    from importlib.metadata import packages_distributions

    known = packages_distributions()
    return {m: {_normal(d) for d in known.get(m, [m])} for m in modules}


def test_every_runtime_import_is_a_declared_dependency() -> None:
    """probed/ imports only what ``[project] dependencies`` installs."""
    declared = _declared()
    missing = {m: d for m, d in _distributions(_third_party_imports("probed")).items()
               if not d & declared}  # fmt: skip
    assert {} == missing


def test_every_test_and_bench_import_is_declared() -> None:
    """tests/ and bench/ import only what the runtime and dev dependencies install."""
    declared = _declared("dev")
    imports = _third_party_imports("tests") | _third_party_imports("bench")
    missing = {m: d for m, d in _distributions(imports).items() if not d & declared}
    assert {} == missing


def _stream_stats_fields() -> set[str]:
    import dataclasses

    from probed.store import StreamStats

    return {f.name for f in dataclasses.fields(StreamStats)}


def test_only_the_store_writes_stream_stats() -> None:
    """The watcher and its helpers record through the store's API, never by assignment.

    Outside ``probed/store.py``, any ``stats.<field> = …``, ``stats.<field> += …`` or
    ``stats.<field>[key] += …`` (``self.stats`` too) on a field of ``StreamStats`` is a
    write around the store; in the stream room, so is calling a field's own method
    (``stats.connect_duration.observe(…)``).
    """
    import ast

    fields = _stream_stats_fields()

    def on_stats(node: ast.AST) -> str | None:
        """The field name if ``node`` is ``stats.<field>`` or ``<x>.stats.<field>``."""
        if not (isinstance(node, ast.Attribute) and node.attr in fields):
            return None
        owner = node.value
        named = isinstance(owner, ast.Name) and owner.id == "stats"
        attr = isinstance(owner, ast.Attribute) and owner.attr == "stats"
        return node.attr if named or attr else None

    offenders = []
    for path in sorted((ROOT / "probed").rglob("*.py")):
        if path.name == "store.py":
            continue
        where = str(path.relative_to(ROOT))
        stream_room = path.parent.name == "stream"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = list(node.targets)
            elif isinstance(node, ast.AugAssign | ast.AnnAssign):
                targets = [node.target]
            elif stream_room and isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Attribute) and (name := on_stats(func.value)):
                    offenders.append(f"{where}:{node.lineno} {name}.{func.attr}()")
            for target in targets:
                for sub in ast.walk(target):
                    if isinstance(sub, ast.Attribute) and (name := on_stats(sub)):
                        offenders.append(f"{where}:{sub.lineno} {name}")
    assert [] == offenders


def test_the_persister_is_given_what_it_persists() -> None:
    """State persistence gets the SLO windows, recommendations, history and windows it
    saves, not the evaluator that holds them: ``probed.persist`` imports no evaluator."""
    import grimp

    graph = grimp.build_graph("probed")
    assert "probed.evaluate" not in graph.find_modules_directly_imported_by("probed.persist")
