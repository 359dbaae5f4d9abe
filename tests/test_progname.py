"""Every command's --help names the command as the user ran it."""
import sys

import pytest

from seds.progname import prog


@pytest.mark.parametrize("argv0, want", [("/venv/bin/seds-train", "seds-train"), ("/venv/bin/seds", "seds train"),
                                         ("/repo/seds/train.py", "python -m seds.train"), ("-m", "python -m seds.train")])
def test_prog_follows_how_the_command_was_run(monkeypatch, argv0, want):
    monkeypatch.setattr(sys, "argv", [argv0, "--help"])
    assert prog("seds.train", "seds-train") == want
