"""CLIP BPE tokenizer: byte-identical ids/masks vs the SEDS authors' tokenizer + dataloader formatting."""
import csv
import importlib.util
import sys

import pytest
import torch

from conftest import SHARED
from seds.clip_bpe import default_tokenizer

OFFICIAL = SHARED / "reference" / "seds-official"
ANN = SHARED / "data" / "annotations"

EDGE = [
    "",
    "   \t\n  ",
    "Hello &amp; welcome &lt;b&gt; &amp;amp; &#39;quoted&#39; &quot;x&quot; &eacute;t&eacute;",
    "Café naïve coöperate Straße ŁÓDŹ ﬁne ｆｕｌｌｗｉｄｔｈ",
    "I ❤️ sign language 👋🏽🤟 — ok… “curly” ‘quotes’",
    "日本語の手話 and Русский язык, العربية",
    "We're, you've, they'll, I'd, I'm, it's, can't, WE'RE, o'clock",
    "Numbers: 1, 22, 333, 4.5, -6, 1,000,000 and 3rd 21st 100%",
    "Punctuation!!! ??? ... --- ;;; ((x)) [y] {z} @#$%^&*_+=~`|\\/<>",
    "mojibake: The Mona Lisa doesnâ€™t have eyebrows.",
    "tabs\tand\nnewlines\r\n  and   spaces",
    "<|startoftext|> literal special strings <|EndOfText|>",
    "a",
    "!",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    " ".join(f"word{i}" for i in range(60)),  # 170 tokens (digits split): sub-sampling
    "antidisestablishmentarianism " * 12,
    "The quick brown fox jumps over the lazy dog " * 3,
]


def _need_official():
    if not (OFFICIAL / "modules" / "tokenization_clip.py").is_file():
        pytest.skip(f"authors' code {OFFICIAL} is not present (../shared beside the repo)")


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def official():
    """(their SimpleTokenizer, a function text → (ids, mask) running their dataloader's _get_text)."""
    _need_official()
    tc = _load("seds_official_tokenization_clip", OFFICIAL / "modules" / "tokenization_clip.py")
    dl = _load("seds_official_dataloader_h2", OFFICIAL / "dataloaders" / "dataloader_H2_retrieval_pose.py")
    their = tc.SimpleTokenizer()
    loader = object.__new__(dl.H2_DataLoader_pose)  # only the attributes _get_text reads
    loader.tokenizer, loader.max_words = their, 32
    loader.SPECIAL_TOKEN = {"CLS_TOKEN": "<|startoftext|>", "SEP_TOKEN": "<|endoftext|>"}

    def get_text(text, max_words=32):
        loader.sentences_dict, loader.max_words = {0: text}, max_words
        s = loader._get_text(0)
        return s["pairs_text"], s["pairs_mask"]

    return their, get_text


@pytest.fixture(scope="module")
def tok():
    return default_tokenizer()


def _sentences(split):
    p = ANN / f"how2sign_realigned_{split}.csv"
    if not p.is_file():
        pytest.skip(f"annotations {p} are not present (../shared beside the repo)")
    with open(p, newline="", encoding="utf-8") as f:
        return [r["SENTENCE"] for r in csv.DictReader(f)]


def test_vocabulary_matches_clip(tok, official):
    their, _ = official
    assert tok.vocab_size == len(their.encoder) == 49408
    assert (tok.sot_id, tok.eot_id) == (49406, 49407)
    assert tok.encoder == their.encoder


@pytest.mark.slow
def test_how2sign_val_identical_ids_and_masks(tok, official):
    their, get_text = official
    sents = _sentences("val")
    assert len(sents) == 1741
    ids, mask = tok.batch(sents)
    assert ids.shape == mask.shape == (1741, 32) and ids.dtype == mask.dtype == torch.long
    n_long = 0
    for i, s in enumerate(sents):
        assert tok.encode(s) == their.encode(s), s
        t_ids, t_mask = get_text(s)
        assert torch.equal(ids[i], t_ids[0]) and torch.equal(mask[i], t_mask[0]), s
        n_long += len(their.encode(s)) > 30
    assert n_long > 0  # the split exercises the sub-sampling branch


@pytest.mark.slow
def test_how2sign_test_split_identical(tok, official):
    their, get_text = official
    sents = _sentences("test")
    assert len(sents) == 2357
    ids, mask = tok.batch(sents)
    for i, s in enumerate(sents):
        t_ids, t_mask = get_text(s)
        assert torch.equal(ids[i], t_ids[0]) and torch.equal(mask[i], t_mask[0]), s


@pytest.mark.parametrize("text", EDGE)
def test_edge_cases_identical(tok, official, text):
    their, get_text = official
    assert tok.encode(text) == their.encode(text)
    for mw in (32, 8, 3, 2):
        ids, mask = tok.batch([text], max_words=mw)
        t_ids, t_mask = get_text(text, mw)
        assert torch.equal(ids, t_ids) and torch.equal(mask, t_mask), (text, mw)


def test_format_layout_and_subsampling(tok):
    ids, mask = tok.batch(["", "hello world", " ".join(f"word{i}" for i in range(60))])
    assert ids[0, :2].tolist() == [49406, 49407] and ids[0, 2:].eq(0).all()
    assert mask.sum(1).tolist() == [2, 4, 32]
    assert (ids * (1 - mask)).eq(0).all()  # zero-padded after EOT
    enc = tok.encode(" ".join(f"word{i}" for i in range(60)))
    assert len(enc) == 170  # 'word' + one token per digit
    kept = ids[2, 1:31].tolist()
    assert kept[0] == enc[0] and kept[-1] == enc[-1]  # sub-sampled end to end, not truncated
    assert kept != enc[:30]
    assert ids[2, -1].item() == 49407


def test_decode_round_trip(tok, official):
    their, _ = official
    texts = _sentences("val")[:200] + EDGE
    for t in texts:
        ids = tok.encode(t)
        assert tok.decode(ids) == their.decode(ids), t
    s = "We're going to work on an arm drill, 2 times!"
    assert tok.decode(tok.encode(s)).strip() == "we 're going to work on an arm drill , 2 times !"
    ids, mask = tok.batch([s])
    assert tok.decode(ids[0][mask[0].bool()], skip_special=True) == tok.decode(tok.encode(s))
    assert tok.decode(ids[0][mask[0].bool()]).startswith("<|startoftext|>")


def test_bad_input_messages(tok):
    with pytest.raises(TypeError, match="expects a str"):
        tok.encode(None)
    with pytest.raises(ValueError, match="max_words"):
        tok.batch(["x"], max_words=1)
    with pytest.raises(ValueError, match="outside the CLIP vocabulary"):
        tok.decode([49408])


def test_single_string_and_empty_batch(tok):
    a, _ = tok.batch("hello")
    b, _ = tok.batch(["hello"])
    assert torch.equal(a, b) and a.shape == (1, 32)
    e, m = tok.batch([])
    assert e.shape == m.shape == (0, 32)
