import os
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
