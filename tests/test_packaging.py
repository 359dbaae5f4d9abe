"""The project as an installable package: pyproject's dependencies and commands, the ``seds`` dispatcher's exit
codes, the app's server settings from Gradio's own variables, and (slow) a wheel built from this checkout,
installed into a fresh virtual environment and run from a folder outside the repository.

The wheel test installs the wheel itself with ``--no-deps`` into a fresh venv whose only other packages are the
already-installed, tested requirements (made visible with a ``.pth`` file naming this interpreter's
site-packages): so it proves that the wheel holds everything the commands need (modules, BPE merges, configs by
name, the app), that its console scripts work and that nothing is read from the checkout — not that pip resolves
the dependency ranges from an index (``test_requirements_satisfy_the_declared_ranges`` checks those ranges against
the tested pins; README "Install" gives the measured full install).
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from seds import cli
from seds.config import CONFIG_DIR

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def pinned_requirements() -> dict[str, str]:
    out = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            req = Requirement(line)
            out[req.name.lower().replace("_", "-")] = str(req.specifier)
    return out


def test_requirements_satisfy_the_declared_ranges():
    """Every dependency of the package is pinned in requirements.txt (the tested set) to a version its range
    admits — so `pip install .` beside requirements.txt never needs another version."""
    pins = pinned_requirements()
    deps = [Requirement(d) for d in PYPROJECT["project"]["dependencies"]]
    implicit = {"huggingface-hub", "scipy"}     # not pinned: they come with transformers / gradio / mediapipe
    for dep in deps:
        name = dep.name.lower().replace("_", "-")
        if name in implicit:
            continue
        assert name in pins, f"{name} is a dependency but not pinned in requirements.txt"
        pinned = pins[name].lstrip("=")
        if pins[name].startswith("=="):
            assert dep.specifier.contains(pinned, prereleases=True), f"{name}: pin {pinned} outside {dep.specifier}"
    from importlib.metadata import version
    for name in implicit:      # the installed versions of the implicit ones satisfy the ranges too
        dep = next(d for d in deps if d.name.lower().replace("_", "-") == name)
        assert dep.specifier.contains(version(name)), f"{name} {version(name)} outside {dep.specifier}"


def test_every_cli_has_a_command():
    scripts = PYPROJECT["project"]["scripts"]
    assert scripts["seds"] == "seds.cli:main" and scripts["seds-app"] == "seds_app.app:main"
    for name in cli.COMMANDS:
        assert scripts[f"seds-{name}"] == f"seds.cli:{name}"
        assert callable(getattr(cli, name))
    assert set(scripts) == {"seds", "seds-app"} | {f"seds-{c}" for c in cli.COMMANDS}
    mapped = PYPROJECT["tool"]["setuptools"]["package-dir"]
    assert (ROOT / mapped["seds_app"] / "app.py").is_file() and (ROOT / mapped["seds.configs"] / "demo.yaml").is_file()
    assert CONFIG_DIR == ROOT / "configs"        # in a checkout: the repository's configs


def test_dispatcher_exit_codes(capsys, tmp_path):
    assert cli.main([]) == 2 and "usage: seds <command>" in capsys.readouterr().out
    assert cli.main(["--help"]) == 0
    assert cli.main(["frobnicate"]) == 2 and "unknown command 'frobnicate'" in capsys.readouterr().err
    assert cli.main(["convert", "--help"]) == 0
    assert cli.main(["evaluate"]) == 2                                   # argparse: --checkpoint is required
    assert cli.main(["evaluate", "--checkpoint", str(tmp_path / "none")]) == 1
    assert "error: " in capsys.readouterr().err
    assert cli.main(["hub", "download", "seds-test/not-cached"]) == 1    # HF_HUB_OFFLINE (conftest)
    assert [cli.exit_code(r) for r in (0, 2, None, {"fused": {}}, True)] == [0, 2, 1, 0, 0]


def test_gradio_variables_sit_below_the_apps_own_settings(tmp_path):
    from demo.backend import DEMO_CONFIG, load_app_config

    assert DEMO_CONFIG.is_file()
    y = tmp_path / "demo.yaml"
    y.write_text("app: {port: 7860, host: null}\n")
    gradio = {"GRADIO_SERVER_PORT": "7000", "GRADIO_SERVER_NAME": "0.0.0.0"}
    assert (load_app_config(y, env={}).port, load_app_config(y, env={}).host) == (7860, None)
    cfg = load_app_config(y, env=gradio)
    assert (cfg.port, cfg.host) == (7000, "0.0.0.0")                     # Gradio's variables over the file
    cfg = load_app_config(y, env={**gradio, "SEDS_PORT": "7100", "SEDS_HOST": "127.0.0.1"})
    assert (cfg.port, cfg.host) == (7100, "127.0.0.1")                   # SEDS_* over Gradio's
    assert load_app_config(y, {"port": 7200}, env={**gradio, "SEDS_PORT": "7100"}).port == 7200   # flags over all
    with pytest.raises(ValueError, match="GRADIO_SERVER_PORT"):
        load_app_config(y, env={"GRADIO_SERVER_PORT": "http"})


# --------------------------------------------------------------------------------------------------
# slow: the wheel in a fresh venv, from outside the repository
# --------------------------------------------------------------------------------------------------

COMMANDS = ["seds", "seds-train", "seds-evaluate", "seds-extract", "seds-index", "seds-convert", "seds-hub", "seds-app"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, cwd, env, timeout=300) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{cmd} → {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


@pytest.mark.slow
def test_wheel_installs_and_every_command_runs_outside_the_repository(tmp_path):
    t0 = time.monotonic()
    dist, venv, work = tmp_path / "dist", tmp_path / "venv", tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", OMP_NUM_THREADS="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    # the wheel, built by setuptools (no build isolation: no index needed) from a copy of the files the build reads,
    # so that no build/ folder is left in the checkout and none left there before can leak stale modules into it
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("seds", "configs", "demo"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(dist), str(src)], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    wheel = next(dist.glob("seds-*.whl"))
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    vpy = venv / "bin" / "python"
    site = Path(subprocess.run([str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # the tested requirements, as installed beside this interpreter, visible to the fresh venv (and nothing else)
    here = Path(sysconfig.get_paths()["purelib"])
    assert not (here / "seds").exists() or pytest.fail(f"{here} holds a seds package: the test could not tell")
    (site / "zz_requirements.pth").write_text(str(here) + "\n")
    run([str(vpy), "-m", "pip", "install", "--no-deps", "-q", str(wheel)], work, env)
    bin_ = venv / "bin"
    env["PATH"] = f"{bin_}{os.pathsep}{env['PATH']}"

    # the package comes from the venv, never from the checkout
    where = run([str(vpy), "-c", "import seds, seds_app, seds.config as c; print(seds.__file__); print(seds_app.__path__[0]);"
                 " print(c.CONFIG_DIR)"], work, env).stdout.split()
    assert all(Path(w).is_relative_to(site) for w in where), where
    for cmd in COMMANDS:
        out = run([str(bin_ / cmd), "--help"], work, env).stdout
        assert "usage:" in out, cmd

    # tiny real runs: train 1 epoch of the tiny model on a small synthetic set (a config by name from the wheel,
    # the CLIP BPE merges from the wheel), evaluate it, its card, a gallery, a sentence search; the app serves it
    ov = ["model.preset=tiny", "train.epochs=1", "train.batch_size=16", "train.eval_batch_size=16",
          "data.synthetic.n_sentences=[32,16,16]", "data.synthetic.n_signers=[2,1,1]", "data.synthetic.vocab_size=30",
          "data.store=store", "train.out=run", "data.workers=0"]
    run([str(bin_ / "seds-train"), "--config", "quickstart_cpu", "--no-progress", *ov], work, env, timeout=600)
    run([str(bin_ / "seds-evaluate"), "--checkpoint", "run/best", "--split", "test", "--device", "cpu"], work, env)
    card = run([str(bin_ / "seds"), "hub", "card", "run/best"], work, env).stdout.strip()
    text = (work / card).read_text()
    assert "library_name: seds" in text and "| test | fused (CGAF) | text → video |" in text
    run([str(bin_ / "seds-index"), "build", "--checkpoint", "run/best", "--manifest", "store/manifest_test.csv",
         "--store", "store", "--out", "gallery", "--no-thumbnails"], work, env)
    sentence = (work / "store" / "manifest_test.csv").read_text().splitlines()[1]
    hits = run([str(bin_ / "seds-index"), "search", "--checkpoint", "run/best", "--gallery", "gallery",
                "--text", "hello", "--device", "cpu"], work, env).stdout
    assert "fused" in hits.lower(), hits
    tok = run([str(vpy), "-c", "from seds.clip_bpe import default_tokenizer as t; print(len(t().encode('hello')))"],
              work, env).stdout
    assert int(tok) >= 1                          # the CLIP BPE merges, package data of the wheel
    assert run([str(bin_ / "seds-convert"), "--help"], work, env).stdout
    app = subprocess.Popen([str(bin_ / "seds-app"), "--checkpoint", "run/best", "--gallery", "gallery", "--no-preview"],
                           cwd=work, env={**env, "GRADIO_SERVER_PORT": str(free_port()), "GRADIO_SERVER_NAME": "127.0.0.1",
                                          "SEDS_I3D_COMPILE": "false"},
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = None
        for line in app.stdout:
            m = re.search(r"Running on local URL:\s+(http://\S+)", line)
            if m:
                url = m.group(1)
                break
        assert url, "seds-app did not start"
        q = run([str(vpy), "-c", "import sys; from gradio_client import Client; c = Client(sys.argv[1], verbose=False);"
                 " print(repr(c.predict(sys.argv[2], api_name='/run_text')))", url, sentence.split(",")[2]], work, env)
        assert "Fused" in q.stdout, q.stdout[-2000:]
    finally:
        app.terminate()
        app.wait(60)
    print(f"wheel test: {time.monotonic() - t0:.0f} s; sentence row {sentence[:40]!r}")
