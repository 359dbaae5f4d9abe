"""The authors' start of the text tower (``model.text.clip_init``): their ``CLIP4Clip.from_pretrained`` copies
every key of OpenAI's ``ViT-B-32.pt`` into ``clip.*`` — the text tower and ``clip.logit_scale`` included — before
training. Ours reads a local CLIP checkpoint (safetensors or a state-dict ``.pt``, never code) into the
``openai-clip`` text tower (``seds.model.factory.create_model``) and the loss's logit scale (``seds.train``).
Tested with CLIP-format state dicts of random values (key names and layout of OpenAI's archive, small sizes); no
real CLIP file is used."""
import math

import pytest
import torch
from safetensors.torch import save_file

from seds.config import ConfigError, load_config
from seds.model.clip_text import ClipTextTower, clip_logit_scale, load_clip_text

W, LAYERS, VOCAB, CTX, OUT = 64, 2, 300, 77, 32


def fake_clip(width=W, layers=LAYERS, vocab=VOCAB, out=OUT, seed=0) -> dict:
    """OpenAI CLIP's state-dict layout: text tower keys, a few ``visual.*`` keys, ``logit_scale`` and the JIT
    archive's size entries."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g) * 0.02          # noqa: E731
    sd = {"token_embedding.weight": r(vocab, width), "positional_embedding": r(CTX, width),
          "ln_final.weight": 1 + r(width), "ln_final.bias": r(width), "text_projection": r(width, out),
          "logit_scale": torch.tensor(math.log(100.0)), "visual.proj": r(768, out),
          "visual.conv1.weight": r(768, 3, 32, 32), "input_resolution": torch.tensor(224),
          "context_length": torch.tensor(CTX), "vocab_size": torch.tensor(vocab)}
    for i in range(layers):
        p = f"transformer.resblocks.{i}."
        sd.update({p + "attn.in_proj_weight": r(3 * width, width), p + "attn.in_proj_bias": r(3 * width),
                   p + "attn.out_proj.weight": r(width, width), p + "attn.out_proj.bias": r(width),
                   p + "ln_1.weight": 1 + r(width), p + "ln_1.bias": r(width),
                   p + "mlp.c_fc.weight": r(4 * width, width), p + "mlp.c_fc.bias": r(4 * width),
                   p + "mlp.c_proj.weight": r(width, 4 * width), p + "mlp.c_proj.bias": r(width),
                   p + "ln_2.weight": 1 + r(width), p + "ln_2.bias": r(width)})
    return sd


def tower() -> ClipTextTower:
    return ClipTextTower(out_dim=OUT, width=W, layers=LAYERS, heads=2, vocab_size=VOCAB)


@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_every_text_parameter_comes_from_the_clip_file(tmp_path, fmt):
    sd = fake_clip()
    path = tmp_path / f"clip.{fmt}"
    if fmt == "safetensors":
        save_file(sd, str(path))
    else:
        torch.save(sd, path)
    t = tower()
    load_clip_text(t, str(path))
    got = t.state_dict()
    assert len(got) == 5 + 12 * LAYERS
    for k, v in got.items():
        torch.testing.assert_close(v, sd[k.replace("resblocks.", "transformer.resblocks.")], rtol=0, atol=0)
    assert float(clip_logit_scale(str(path))) == pytest.approx(math.log(100.0))
    # the tower computes with them: a planted change of one loaded weight moves its output
    ids = torch.tensor([[49406 % VOCAB, 5, 7, VOCAB - 1]])
    before = t(ids)[0]
    with torch.no_grad():
        t.resblocks[1].mlp.c_fc.weight[0, 0] += 1.0
    assert not torch.allclose(t(ids)[0], before)


def test_a_clip_file_that_does_not_fit_is_refused_with_every_reason():
    bad = fake_clip()
    bad["text_projection"] = torch.zeros(W, OUT + 1)
    del bad["ln_final.bias"]
    bad.update({k.replace(".1.", ".2."): v for k, v in fake_clip().items() if "resblocks.1." in k})
    with pytest.raises(ValueError) as e:
        load_clip_text(tower(), bad)
    msg = str(e.value)
    assert "shape: text_projection" in msg and "missing: ln_final.bias" in msg and "unused: resblocks.2.ln_1.weight" in msg
    with pytest.raises(ValueError, match="not a CLIP checkpoint"):
        load_clip_text(tower(), {"foo": torch.zeros(1)})
    with pytest.raises(ValueError, match="no scalar 'logit_scale'"):
        clip_logit_scale({"foo": torch.zeros(1)})


@pytest.mark.filterwarnings("ignore:'torch.load' received a zip file that looks like a TorchScript archive")
def test_torchscript_archive_is_refused_not_run(tmp_path):
    """OpenAI's ViT-B-32.pt is a TorchScript archive; reading it would mean running its code: refused, with the
    one-time conversion to do."""
    path = tmp_path / "ViT-B-32.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    with pytest.raises(ValueError, match=r"weights_only=True.*TorchScript archive.*safetensors"):
        load_clip_text(tower(), str(path))
    with pytest.raises(FileNotFoundError, match="CLIP checkpoint .* not found"):
        load_clip_text(tower(), str(tmp_path / "absent.safetensors"))


def test_clip_init_is_a_text_field_of_the_openai_clip_tower():
    cfg = load_config(None, ["model.variant=official", "model.text.model=openai-clip",
                             "model.text.clip_init=ViT-B-32.safetensors"])
    assert cfg.model.text.clip_init == "ViT-B-32.safetensors"
    with pytest.raises(ConfigError, match="clip_init"):
        load_config(None, ["model.text.model=hash", "model.text.clip_init=ViT-B-32.safetensors"])


@pytest.mark.slow
def test_official_config_starts_the_text_tower_and_logit_scale_from_clip(tmp_path):
    """configs/how2sign.yaml + ``model.text.clip_init``: ``create_model`` loads the full-size text tower
    (12 × 512, vocabulary 49408) from the file; ``seds.train`` starts the logit scale from it (ln 100 in
    OpenAI's file) instead of ln(1/0.07)."""
    from pathlib import Path

    from seds.model import create_model
    from seds.train import new_loss
    sd = fake_clip(width=512, layers=12, vocab=49408, out=512, seed=1)
    path = tmp_path / "clip.safetensors"
    save_file(sd, str(path))
    small = [f"model.{s}_transformer.{k}" for s in ("pose", "rgb") for k in ("width=64", "layers=1", "heads=2")]
    repo = Path(__file__).resolve().parents[1]
    cfg = load_config(repo / "configs" / "how2sign.yaml", small + [f"model.text.clip_init={path}"])
    model = create_model(cfg.model, hand_init=None)
    torch.testing.assert_close(model.text.backbone.token_embedding.weight, sd["token_embedding.weight"],
                               rtol=0, atol=0)
    torch.testing.assert_close(model.text.backbone.resblocks[11].ln_2.bias, sd["transformer.resblocks.11.ln_2.bias"],
                               rtol=0, atol=0)
    assert float(new_loss(cfg).logit_scale.detach()) == pytest.approx(math.log(100.0))
    cfg.model.text.clip_init = None
    assert float(new_loss(cfg).logit_scale.detach()) == pytest.approx(math.log(1 / 0.07))
