"""The name a command's ``--help`` and errors show: the installed console script (``seds-train``, or
``seds train`` through the one ``seds`` command) when that is how it was run, else ``python -m <module>``."""
from __future__ import annotations

import sys
from pathlib import Path


def prog(module: str, command: str) -> str:
    """``command`` (``seds-train``) run as that script, ``seds train`` through ``seds``, else ``python -m module``."""
    name = Path(sys.argv[0]).name
    if name == command or name == f"{command}.exe":
        return command
    if name in ("seds", "seds.exe") and command.startswith("seds-"):
        return f"seds {command[len('seds-'):]}"
    return f"python -m {module}"
