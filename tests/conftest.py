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
