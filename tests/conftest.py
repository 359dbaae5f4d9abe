import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = SHARED / "data"
    if not d.is_dir():
        pytest.skip(f"real data folder {d} is not present (../shared beside the repo)")
    return d


@pytest.fixture(scope="session")
def official_app(tmp_path_factory):
    """The served setup of the `official` variant (tests/official_app_assets.py: a converted reduced random-weight
    checkpoint, an imported store, a gallery), built once per run for every test file that reads it."""
    from tests.official_app_assets import official_app_assets     # torch and seds only when a test asks for it

    with pytest.MonkeyPatch.context() as mp:
        return official_app_assets(tmp_path_factory.mktemp("official-app"), mp)


@pytest.fixture(scope="session")
def tiny_app(tmp_path_factory):
    """Tiny app assets (tests/assets.py: 3 rendered videos of 6 sentences, a random `tiny` checkpoint) with a gallery
    at <root>/gallery whose videos lie in <root>/videos, built once for the app's hostile-input and security tests;
    a test adds crafted galleries beside it under a name of its own."""
    from tests.assets import tiny_assets, tiny_gallery

    a = tiny_assets(tmp_path_factory.mktemp("tiny-app"), n_videos=3, n_sentences=6)
    tiny_gallery(a)
    return a


@pytest.fixture(autouse=True)
def _torch_threads_restored():
    """A CLI's ``main`` run in-process (``--threads 1`` by default in the ablation runner) sets torch's thread count
    for the whole interpreter; every later test then ran on one thread. Each test gets back the count it started with."""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    yield
    torch = sys.modules.get("torch")
    if torch is not None and before is not None and torch.get_num_threads() != before:
        torch.set_num_threads(before)


# The full suite runs in two workers (README: `-n 2 --dist loadfile`), each taking a whole test file at a time.
# xdist hands out the files with the most tests first, which left the long files of one or two tests (the Space's
# fresh venv, the soak, the GPU suite's CPU mode) to the end, run by one worker while the other idled: one run had
# the workers busy 828 s and 557 s. Longest first instead (files not listed keep their order, after these).
# Seconds per file under two workers on the 2-core CPU (`pytest -n 2 --dist loadfile --durations=0`), rough on
# purpose: only their order matters.
LONG_FILES = {"test_train.py": 135, "test_space.py": 117, "test_official_parity.py": 112, "test_i3d.py": 109,
              "test_app_soak.py": 101, "test_packaging.py": 73, "test_gpu_suite.py": 68, "test_official_served.py": 66,
              "test_extract_cli.py": 62, "test_pretrain_hands.py": 61, "test_app_hostile.py": 54,
              "test_app_backend.py": 49, "test_app_browser.py": 43, "test_ablate.py": 37,
              "test_app_official_browser.py": 30, "test_signbert_gcn.py": 28, "test_grad_cache.py": 27,
              "test_localise.py": 25, "test_architecture.py": 23, "test_index_cli.py": 20}


def _in_workers(config) -> bool:
    return getattr(config.option, "dist", "no") != "no" or "PYTEST_XDIST_WORKER" in os.environ


def pytest_configure(config):
    if _in_workers(config) and hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False          # hand files out in the order below


def pytest_collection_modifyitems(config, items):
    if _in_workers(config):
        items.sort(key=lambda item: -LONG_FILES.get(Path(str(item.fspath)).name, 0))     # stable within a file
