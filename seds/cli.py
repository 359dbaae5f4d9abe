"""The installed commands: ``seds-train``, ``seds-evaluate``, ``seds-extract``, ``seds-index``, ``seds-convert``,
``seds-hub`` (and ``seds-app``, the app's own entry), and ``seds <command> …`` for all of them.

Each command is exactly ``python -m seds.<module>`` (same arguments, same ``--help``) with one exit-code
convention: 0 done, 1 failed, 2 bad arguments (argparse's), 130 interrupted (Ctrl-C).
"""
from __future__ import annotations

import importlib
import sys

from seds import __version__

# command → (module whose main(argv) runs it, one line of help)
COMMANDS = {
    "train": ("seds.train", "train a model (YAML config + key=value overrides)"),
    "evaluate": ("seds.evaluate", "R@K / MedR of a checkpoint (local folder or Hub repo) on a split"),
    "extract": ("seds.extract.__main__", "videos → keypoints + RGB features (a feature store)"),
    "index": ("seds.index", "build / search a gallery index"),
    "convert": ("seds.convert", "convert the authors' released checkpoints"),
    "hub": ("seds.hub", "model cards; publish / fetch checkpoints and galleries on the Hugging Face Hub"),
}


def exit_code(result) -> int:
    """A command's ``main`` result as an exit code: an int is one; ``None`` from ``seds.evaluate`` (which returns
    its results, None when it produced none) is a failure; any other result (a results dict) is success."""
    if isinstance(result, bool):
        return int(not result)
    if isinstance(result, int):
        return result
    return 1 if result is None else 0


def run(command: str, argv: list[str] | None = None) -> int:
    module, _ = COMMANDS[command]
    # imported by name so that one command loads only its own modules (start-up time)
    main_fn = importlib.import_module(module).main
    try:
        result = main_fn(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:          # argparse: --help (0), bad arguments (2)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except (ValueError, OSError) as e:   # the library's errors (ConfigError, CheckpointError, ...) not caught by main
        print(f"error: {e}", file=sys.stderr)
        return 1
    return exit_code(result)


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: seds <command> [arguments]   (or seds-<command>; seds-app starts the app)", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "seds <command> --help shows a command's arguments. Exit codes: 0 done, 1 failed, 2 bad arguments, "
              "130 interrupted."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        print(f"seds {__version__}")
        return 0
    if argv[0] not in COMMANDS:
        print(f"seds: unknown command {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    return run(argv[0], argv[1:])


def _entry(command: str):
    def entry() -> int:
        return run(command)
    entry.__name__ = command
    entry.__doc__ = f"``seds-{command}``: {COMMANDS[command][1]}"
    return entry


train, evaluate, extract, index, convert, hub = (_entry(c) for c in COMMANDS)

if __name__ == "__main__":
    sys.exit(main())
