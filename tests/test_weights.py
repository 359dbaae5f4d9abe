"""seds.weights.read_state_dict: the one reader of weight files (safetensors or torch.load(weights_only=True))."""
from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from seds.weights import check_tensor_dict, read_state_dict


class Boom(Exception):
    pass


class _WritesFile:
    """Unpickling this would write ``self.target`` (through ``Path.write_text``)."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (Path.write_text, (self.target, "code ran"))


def _state():
    return {"a.weight": torch.arange(6.0).reshape(2, 3), "a.bias": torch.tensor([1, 2], dtype=torch.int64)}


def _same(got, want):
    assert sorted(got) == sorted(want)
    for k in want:
        torch.testing.assert_close(got[k], want[k])


def test_safetensors_and_torch_files(tmp_path):
    save_file(_state(), tmp_path / "w.safetensors")
    _same(read_state_dict(tmp_path / "w.safetensors"), _state())
    torch.save(_state(), tmp_path / "w.pt")
    _same(read_state_dict(str(tmp_path / "w.pt")), _state())


@pytest.mark.parametrize("key", ["state_dict", "model", "model_state_dict", "net"])
def test_nested_state_dict_is_unwrapped(tmp_path, key):
    torch.save({key: _state(), "epoch": 3, "optimizer": {"lr": 0.1}}, tmp_path / "ckpt.pth")
    _same(read_state_dict(tmp_path / "ckpt.pth"), _state())
    # unwrap=() returns the object as loaded (the caller checks it)
    raw = read_state_dict(tmp_path / "ckpt.pth", unwrap=(), require_tensors=False)
    assert raw["epoch"] == 3 and set(raw[key]) == set(_state())
    # ... and with the tensor check on, the wrapper's non-tensor entries are named
    with pytest.raises(ValueError, match=r"ckpt\.pth: not a state dict of tensors .*epoch"):
        read_state_dict(tmp_path / "ckpt.pth", unwrap=())


def test_unwrap_order_is_the_callers(tmp_path):
    torch.save({"model": {"m": torch.zeros(1)}, "state_dict": {"s": torch.ones(1)}}, tmp_path / "two.pt")
    assert list(read_state_dict(tmp_path / "two.pt")) == ["s"]
    assert list(read_state_dict(tmp_path / "two.pt", unwrap=("model", "state_dict"))) == ["m"]


def test_missing_file_names_it_and_uses_the_callers_types(tmp_path):
    with pytest.raises(ValueError, match=r"checkpoint .*nope\.pt not found"):
        read_state_dict(tmp_path / "nope.pt")
    with pytest.raises(Boom, match=r"CLIP checkpoint .*nope\.pt not found"):
        read_state_dict(tmp_path / "nope.pt", what="CLIP checkpoint", error=Boom)
    with pytest.raises(FileNotFoundError):
        read_state_dict(tmp_path / "nope.pt", error=Boom, missing_error=FileNotFoundError)
    with pytest.raises(Boom, match="not found"):          # a folder is not a weights file
        read_state_dict(tmp_path, error=Boom)


def test_pickled_object_is_refused_and_its_code_never_runs(tmp_path):
    target = tmp_path / "pwned.txt"
    torch.save({"w": torch.zeros(2), "x": _WritesFile(target)}, tmp_path / "evil.pth")
    assert not target.exists()
    with pytest.raises(Boom, match=r"evil\.pth: cannot be read with torch\.load\(weights_only=True\)") as err:
        read_state_dict(tmp_path / "evil.pth", error=Boom)
    assert "arbitrary pickles are never loaded" in str(err.value)
    assert not target.exists()
    # the same file *does* run code when unpickled without weights_only: the test would catch a regression
    torch.load(tmp_path / "evil.pth", weights_only=False)
    assert target.read_text() == "code ran"


def test_pickle_of_a_plain_non_tensor_object_is_not_a_state_dict(tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(Boom, match=r"list\.pt: not a state dict of tensors \(found a list\)"):
        read_state_dict(tmp_path / "list.pt", error=Boom)
    assert read_state_dict(tmp_path / "list.pt", require_tensors=False) == [1, 2, 3]


def test_torchscript_like_and_garbage_files_give_a_clear_error(tmp_path):
    # a zip archive that is not a torch.save file (TorchScript archives are zips with code/ and constants.pkl)
    with zipfile.ZipFile(tmp_path / "ViT-B-32.pt", "w") as z:
        z.writestr("ViT-B-32/code/__torch__.py", "def forward(self): ...")
        z.writestr("ViT-B-32/constants.pkl", b"\x80\x02]q\x00.")
    with pytest.raises(Boom, match=r"ViT-B-32\.pt: cannot be read with torch\.load\(weights_only=True\).*convert me"):
        read_state_dict(tmp_path / "ViT-B-32.pt", error=Boom, hint="convert me")
    (tmp_path / "junk.pth").write_bytes(b"\x00not a checkpoint at all" * 10)
    with pytest.raises(Boom, match=r"junk\.pth: cannot be read with torch\.load"):
        read_state_dict(tmp_path / "junk.pth", error=Boom)
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(Boom, match=r"junk\.safetensors: cannot be read as safetensors"):
        read_state_dict(tmp_path / "junk.safetensors", error=Boom)


@pytest.mark.filterwarnings("ignore:.*TorchScript archive")
def test_real_torchscript_archive_is_refused(tmp_path):
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), tmp_path / "scripted.pt")
    with pytest.raises(Boom, match=r"scripted\.pt: cannot be read with torch\.load\(weights_only=True\)"):
        read_state_dict(tmp_path / "scripted.pt", error=Boom)


def test_check_tensor_dict():
    check_tensor_dict(_state(), "x")
    check_tensor_dict({}, "x")
    with pytest.raises(Boom, match=r"src: not a state dict of tensors \(found non-tensor entries \['n'\]\)"):
        check_tensor_dict({"t": torch.zeros(1), "n": 3}, "src", Boom)
