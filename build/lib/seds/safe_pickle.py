"""Reading pickles that may come from untrusted sources, without running their code.

``pickle.load`` executes whatever callables a file names (``os.system``, ``eval``, ...). The files this
project must read as pickles (DeepMind's I3D weights, the SEDS authors' RTMPose keypoints, I3D features
and annotations) only ever hold numpy arrays, numpy scalars and plain Python containers, so
:class:`NumpyOnlyUnpickler` resolves exactly the globals those need and refuses every other one
before it is called. Plain ``dict``/``list``/``tuple``/``str``/numbers need no global at all.
"""
from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any, BinaryIO

# (module, name) pairs a numpy-and-containers pickle needs (numpy 1.x and 2.x module paths).
_NUMPY_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),        # numpy scalars
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),    # protocol 5 arrays
    ("_codecs", "encode"),                                    # bytes in protocol <= 2 pickles
}
_CONTAINER_GLOBALS = {
    ("collections", "OrderedDict"), ("builtins", "set"), ("builtins", "frozenset"),
    ("__builtin__", "set"), ("__builtin__", "frozenset"),
}
ALLOWED_GLOBALS = frozenset(_NUMPY_GLOBALS | _CONTAINER_GLOBALS)


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle names something other than numpy arrays / plain containers (refused, nothing ran)."""


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that only constructs numpy arrays, numpy scalars/dtypes and plain containers."""

    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED_GLOBALS:
            raise UnsafePickleError(f"refusing to load {module}.{name}: only numpy arrays and plain "
                                    "containers are allowed in this file")
        return super().find_class(module, name)


def load_numpy_pickle(source: str | os.PathLike | BinaryIO | bytes, what: str = "pickle") -> Any:
    """Unpickle ``source`` (a path, an open binary file or bytes) with :class:`NumpyOnlyUnpickler`.

    Every failure raises :class:`pickle.UnpicklingError` (:class:`UnsafePickleError` when the file
    tries to construct anything else) with a message naming the file and ``what`` it should be.
    """
    if isinstance(source, (bytes, bytearray)):
        name, fh, close = "<bytes>", io.BytesIO(source), True
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{what} not found: {path}")
        name, fh, close = str(path), open(path, "rb"), True
    else:
        name, fh, close = getattr(source, "name", "<stream>"), source, False
    try:
        return NumpyOnlyUnpickler(fh).load()
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{name}: {e} (a {what} never needs more; the file was not loaded)") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            ImportError, UnicodeDecodeError) as e:
        raise pickle.UnpicklingError(f"{name}: not a readable {what} ({type(e).__name__}: {e})") from e
    finally:
        if close:
            fh.close()
