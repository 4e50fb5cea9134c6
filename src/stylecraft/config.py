"""Recipes: strict, typed configuration.

A recipe YAML names the stages to run and their settings. The schema below is the only source
of truth: unknown keys, wrong types and missing values fail, and every error in a recipe and its
``key=value`` overrides is reported at once. The resolved recipe is saved in the run folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from stylecraft.audio import AUDIO_EXTENSIONS
from stylecraft.errors import ConfigError

STAGES = ("demo", "ingest", "separate", "segment", "codec", "augment", "tokenize", "train", "generate", "evaluate")

ATTENTION_CHOICES = ("auto", "sdpa", "eager", "flash_attention_2")  # train.attention (stylecraft.train.speed)


@dataclass
class DemoConfig:
    """Synthesised demo catalogue (quickstart only)."""

    tracks: int = 4
    duration_s: float = 40.0
    sample_rate: int = 32000
    seed: int = 0


@dataclass
class IngestConfig:
    extensions: list[str] = field(default_factory=lambda: list(AUDIO_EXTENSIONS))
    valid_fraction: float = 0.2  # share of TRACKS held out for validation
    min_duration_s: float = 1.0
    split_seed: int = 0
    workers: int = 0  # 0 = number of CPU cores
    # Near-duplicate recordings (re-encodes, remasters, copies at another gain) share one split.
    near_duplicates: bool = True
    duplicate_corr: float = 0.9  # envelope correlation from which two tracks are copies (stylecraft.data.duplicates)


CAPTION_MODES = ("artist", "analysis", "tags", "file")  # stylecraft.data.captions.MODES


@dataclass
class CaptionsConfig:
    """Per-track captions, built by ingest (stylecraft.data.captions)."""

    # artist: "<artist> style"; analysis: + tempo and key from the audio; tags: + musicnn's genre,
    # instrument and mood (after `stylecraft fetch musicnn`); file: the user's own, from `file`.
    mode: str = "analysis"
    artist_from: str = "recipe"  # recipe: the recipe's artist; folder: each track's first folder under the catalogue
    file: str = ""  # CSV (header path,caption) or JSONL ({"path", "caption"}); paths relative to the catalogue or absolute


@dataclass
class SeparateConfig:
    model: str = "spleeter:2stems"  # spleeter:2stems|4stems|5stems[-16kHz], demucs:htdemucs; -tiny: random weights
    checkpoint: str = ""  # weights path; empty: the fetched release (stylecraft fetch spleeter:2stems)
    keep: list[str] = field(default_factory=list)  # stems summed into the training audio; empty: all but `drop`
    drop: list[str] = field(default_factory=list)  # e.g. [vocals]
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    batch_segments: int = 0  # Spleeter 11.9 s segments per forward pass; 0 = 2 on CPU, 8 on GPU


@dataclass
class SegmentConfig:
    sample_rate: int = 32000  # MusicGen's EnCodec rate
    window_s: float = 10.0
    hop_s: float = 5.0
    silence_db: float = -50.0  # windows whose RMS is below this (dBFS) are skipped
    loudness_lufs: float = -16.0  # per-track integrated loudness target
    n_fft: int = 1024  # STFT: Hann window of n_fft samples
    hop_length: int = 512  # 50% overlap
    n_mels: int = 64
    n_mfcc: int = 20
    # Feature shards written per window (features/<track>.<name>.npy); nothing in the pipeline reads
    # them back (outliers work from the audio), so [] writes none (STFT shards alone take ~0.46 GB per hour of audio at the defaults).
    features: list[str] = field(default_factory=lambda: ["mfcc", "logmel", "stft"])
    workers: int = 0  # 0 = number of CPU cores


FEATURE_NAMES = ("mfcc", "logmel", "stft")  # stylecraft.data.features.NAMES


@dataclass
class OutliersConfig:
    """Outlier report written by the segment stage (stylecraft.data.outliers)."""

    enabled: bool = True
    # Report only by default: flags are statistics (a few percent of real tracks can be flagged),
    # and dropping a real recording unasked is the loss this check exists to prevent.
    exclude: bool = False
    track_z: float = 3.5
    window_z: float = 4.0
    duplicate_corr: float = 0.9  # fingerprint correlation from which two tracks count as copies
    noise_coherence: float = 0.1  # spectral coherence below which audio counts as noise (music: 0.2-0.7)
    clipped_share: float = 0.02  # share of samples within 2 dB of the peak from which a track counts as clipped
    dropout_share: float = 0.02  # share of samples in digital-zero gaps (>= 10 ms) from which a track has dropouts
    flatness_z: float = 2.0  # robust z of a track's spectral flatness from which it counts as noisy or distorted
    # Window features: "mfcc" needs no weights; a learned music embedding ("musicnn-mtt", after
    # `stylecraft fetch musicnn`) also tells another artist's tracks apart.
    embedding: str = "mfcc"


@dataclass
class AugmentConfig:
    enabled: bool = True
    pitch_semitones: list[float] = field(default_factory=lambda: [-2.0, -1.0, 1.0, 2.0])
    stretch_rates: list[float] = field(default_factory=lambda: [0.9, 1.1])
    # Share of training items (windows + variants) that are variants, in [0, P / (P + 1)] for P planned
    # variants per window; variants are drawn per window, seeded. null: every planned variant (P / (P + 1):
    # 6/7 = 0.857 with the default plan).
    share: float | None = None
    seed: int = 0
    workers: int = 0


@dataclass
class ModelConfig:
    # preset name, registry name, hub id, local folder or run folder; "new:<architecture>" builds a
    # randomly initialised model (base-model pretraining) around the codec named by `codec`
    name: str = "tiny"
    codec: str = ""  # with new:...: an EnCodec folder; empty: this run's codec stage output (codec/model)
    seed: int = 0  # initialisation seed of a new:... model


@dataclass
class CodecLossConfig:
    mel: float = 1.0  # multi-scale log-mel L1
    stft: float = 1.0  # multi-resolution STFT (spectral convergence + log magnitude)
    l1: float = 0.1  # waveform L1
    commitment: float = 1.0
    adversarial: float = 1.0  # with codec.discriminator
    feature_matching: float = 1.0  # with codec.discriminator


@dataclass
class CodecConfig:
    """Codec training (stylecraft.codec.train): an EncodecModel on the run's segmented audio."""

    architecture: str = "mini"  # tiny | mini | musicgen-32khz (stylecraft.codec.architectures)
    config: dict[str, Any] = field(default_factory=dict)  # EncodecConfig fields over the architecture's
    crop_s: float = 1.0  # seconds per training crop
    batch_size: int = 8
    lr: float = 3e-4
    betas: list[float] = field(default_factory=lambda: [0.5, 0.9])
    warmup_steps: int = 200  # linear warm-up, then a constant rate (training longer just continues)
    max_steps: int = 20000
    decay_steps: int = 0  # the last steps decay the rate linearly to 5% (may be set or changed on resume)
    max_grad_norm: float = 10.0
    loss: CodecLossConfig = field(default_factory=CodecLossConfig)
    ema_decay: float = 0.99  # codebook EMA
    dead_fraction: float = 0.1  # codes used less than this share of an even share are replaced
    vq_warmup_steps: int = 500  # steps without quantization first; then codebooks by k-means on the latents
    kmeans_frames: int = 40000  # latent frames the codebooks are initialised from
    gain_db: list[float] = field(default_factory=lambda: [-10.0, 2.0])  # random gain per crop
    discriminator: bool = False  # multi-scale STFT discriminator + feature matching (costs ~2x)
    save_every: int = 500
    keep_last: int = 2
    eval_every: int = 500
    eval_crops: int = 64  # fixed held-out crops (from valid tracks) scored at each evaluation
    log_every: int = 10
    seed: int = 0
    tensorboard: bool = True


@dataclass
class TokenizeConfig:
    batch_size: int = 8


@dataclass
class LoraConfig:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    # Decoder linear layers: attention projections (self and cross), the MLP, and the output heads.
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2", "lm_heads"]
    )


@dataclass
class EmaConfig:
    """Exponential moving average of the trainable weights (updated after every optimizer step)."""

    enabled: bool = False
    decay: float = 0.999
    warmup: bool = True  # the weight of the old average rises as min(decay, (1 + n) / (10 + n)) over n updates
    use_for_eval: bool = True  # validation loss, demos and FAD use the EMA weights


@dataclass
class EarlyStoppingConfig:
    """Stop when ``metric`` has not improved by ``min_delta`` for ``patience`` evaluations."""

    enabled: bool = False
    metric: str = "val_loss"  # val_loss (every eval_every steps) | fad | kad (every demo.every steps)
    patience: int = 3
    min_delta: float = 0.0
    embedding: str = "mfcc"  # the FAD/KAD embedding when metric=fad or kad
    guidance_scale: float | None = None  # demos of this scale are scored (None: generate.guidance_scale)


@dataclass
class TrainDemoConfig:
    """Audio generated with the current weights every ``every`` steps (0: never)."""

    every: int = 0
    prompts: list[str] = field(default_factory=list)  # empty: the run's caption
    seeds: list[int] = field(default_factory=lambda: [0])
    guidance_scales: list[float] = field(default_factory=lambda: [1.0, 3.0])
    duration_s: float = 4.0
    top_k: int = 250


@dataclass
class ExportConfig:
    lora: str = "both"  # merged (model/ weights) | adapter (model/adapter only) | both
    formats: list[str] = field(default_factory=lambda: ["transformers"])


# Formats the exporter knows (stylecraft.train.export.EXPORTERS registers one function per name).
EXPORT_FORMATS = ("transformers",)


@dataclass
class TrainConfig:
    mode: str = "lora"  # lora | full
    lora: LoraConfig = field(default_factory=LoraConfig)
    lr: float = 1e-4
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    warmup_steps: int = 10
    max_steps: int = 100
    batch_size: int = 4
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    cond_dropout: float = 0.1  # probability of a zeroed text condition (classifier-free guidance)
    mixed_precision: str = "auto"  # auto (bf16 on GPUs that have it) | no | bf16 | fp16 (with a grad scaler)
    gradient_checkpointing: bool = False  # recompute decoder activations in backward (less memory)
    dropout: float | None = None  # decoder dropout override (None: the model's own)
    text_encoder: str = "frozen"  # frozen | train (with the decoder, for a new model's pretraining; full mode only)
    ema: EmaConfig = field(default_factory=EmaConfig)
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    keep_best: bool = False  # keep the best checkpoint besides the last N, and export it
    demo: TrainDemoConfig = field(default_factory=TrainDemoConfig)
    tensorboard: bool = True  # train/tensorboard (losses, learning rate, demo audio, FAD)
    export: ExportConfig = field(default_factory=ExportConfig)
    save_every: int = 50
    keep_last: int = 2
    eval_every: int = 50
    eval_per_track: int = 8  # held-out windows validated per track, evenly spaced (0: all); fixed for a run
    seed: int = 0
    log_every: int = 1
    attention: str = "auto"  # decoder attention: auto (sdpa) | sdpa | eager | flash_attention_2
    compile: bool = False  # torch.compile the decoder (compiled again on every start; gain not yet measured)


@dataclass
class WatermarkConfig:
    """Keyed watermark added to every generated file (stylecraft.generate.watermark, watermark_audioseal)."""

    enabled: bool = True
    key: str = "stylecraft"  # a label's own secret, or "env:NAME" to read it from $NAME
    strength: float = 0.12  # dsp: tile gain 1 ± strength in 0.5-7 kHz (eval/results/reliability.md: SNR, detection)
    method: str = "dsp"  # dsp: keyed spread spectrum, no weights; audioseal: AudioSeal networks (weights needed)
    audioseal_path: str = ""  # folder with generator_base/detector_base weights; empty: `stylecraft fetch audioseal`'s


@dataclass
class LongFormConfig:
    """Windowed continuation for pieces longer than one window (stylecraft.generate.longform)."""

    window_s: float = 30.0  # seconds the decoder sees at once (prompt + new frames)
    context_s: float = 10.0  # seconds of the piece so far that prompt each next window


@dataclass
class GenerateConfig:
    prompts: list[str] = field(default_factory=list)  # empty: the artist's caption (or prompts_file)
    prompts_file: str = ""  # text file, one prompt per line (blank lines and # comments ignored)
    per_prompt: int = 1
    batch_size: int = 4
    duration_s: float = 8.0
    temperature: float = 1.0
    top_k: int = 250
    top_p: float = 0.0
    guidance_scale: float = 3.0
    seed: int = 0
    long_form: LongFormConfig = field(default_factory=LongFormConfig)
    seed_audio: str = ""  # audio file whose last seed_audio_s seconds every output continues
    seed_audio_s: float = 0.0  # 0: up to half of duration_s
    melody: str = ""  # audio file whose chroma conditions a melody model
    best_of: int = 1  # candidates per output; the reranker's favourite is kept
    rerank: str = "likelihood"  # likelihood | style (nearest the artist's sound, least repetitive)
    style_reference: str = ""  # rerank=style: folder of the artist's audio (empty: the catalogue)
    beams: int = 0  # 0: sample; >= 1: beam search of this width (1: greedy), guidance inside the beam
    length_penalty: float = 1.0  # beam search: final score = log-likelihood / new tokens ** length_penalty
    watermark: WatermarkConfig = field(default_factory=WatermarkConfig)


@dataclass
class EvaluateConfig:
    embedding: str = "mfcc"  # the embedding of the headline FAD (fad.json "fad")
    embeddings: list[str] = field(default_factory=list)  # more embeddings scored beside it (e.g. [vggish, clap])
    n_boot: int = 100  # bootstrap replicates of each FAD's confidence interval (0: none)


@dataclass
class RecipeConfig:
    name: str = "run"
    artist: str = "artist"
    catalogue: str = MISSING  # folder of the artist's audio
    run_dir: str = ""  # default: runs/<name>
    # Separation needs downloaded weights, so a recipe asks for it by listing the stage.
    stages: list[str] = field(default_factory=lambda: [s for s in STAGES[1:] if s not in ("separate", "codec")])
    demo: DemoConfig = field(default_factory=DemoConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    captions: CaptionsConfig = field(default_factory=CaptionsConfig)
    separate: SeparateConfig = field(default_factory=SeparateConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    outliers: OutliersConfig = field(default_factory=OutliersConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    codec: CodecConfig = field(default_factory=CodecConfig)
    tokenize: TokenizeConfig = field(default_factory=TokenizeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)


def _parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key=value")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {item!r} has an empty key")
    value = yaml.safe_load(raw) if raw.strip() else ""
    return key, value


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            node[part] = nxt
        node = nxt
    node[parts[-1]] = value


def _collect_errors(
    schema: DictConfig, data: Any, prefix: str, errors: list[str], optional: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Walk user data against the schema, collecting every unknown key and bad value.

    Returns:
        The subset of ``data`` that is valid, so range checks can still run on it.
    """
    if not isinstance(data, dict):
        errors.append(f"{prefix or 'recipe'}: expected a mapping, got {type(data).__name__}")
        return {}
    clean: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if key not in list(schema.keys()):
            known = ", ".join(sorted(str(k) for k in schema.keys()))
            errors.append(f"unknown key '{name}' (known here: {known})")
            continue
        if value == MISSING:
            # OmegaConf's merge would keep the default: a recipe's "???" means "the user must set it".
            if name not in optional:
                errors.append(f"'{name}' must be set: pass {name}=...")
            continue
        sub = schema._get_node(key)  # noqa: SLF001 - OmegaConf's typed node access
        if isinstance(sub, DictConfig) and OmegaConf.get_type(sub) is dict:
            # A free mapping (e.g. codec.config): its keys are checked by the code that reads it.
            if not isinstance(value, dict):
                errors.append(f"bad value for '{name}': expected a mapping, got {type(value).__name__}")
            else:
                clean[key] = value
            continue
        if isinstance(sub, DictConfig):
            clean[key] = _collect_errors(sub, value, name, errors, optional)
            continue
        try:
            # Assigning into a fresh typed copy runs OmegaConf's own type validation for this leaf.
            OmegaConf.update(OmegaConf.structured(RecipeConfig), name, value, merge=True)
        except OmegaConfBaseException as exc:
            msg = str(exc).splitlines()[0]
            errors.append(f"bad value for '{name}': {value!r} ({msg})")
            continue
        clean[key] = value
    return clean


def load_recipe(
    path: str | Path | None,
    overrides: list[str] | tuple[str, ...] = (),
    require_catalogue: bool = True,
) -> DictConfig:
    """Load a recipe YAML (or only defaults when ``path`` is None) and apply ``key=value`` overrides.

    Args:
        path: recipe YAML, or None for the defaults.
        overrides: ``key=value`` items (values parsed as YAML).
        require_catalogue: whether a recipe that ingests must name its catalogue (single-stage
            commands on an existing run do not need it).

    Raises:
        ConfigError: listing every unknown key, bad value and missing required value at once.
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"recipe '{p}' does not exist (see recipes/ for examples)")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"recipe '{p}' is not valid YAML: {str(exc).splitlines()[0]}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"recipe '{p}' must be a mapping of keys to values")
        data = loaded
    errors: list[str] = []
    parsed: list[tuple[str, Any]] = []
    for item in overrides:
        try:
            parsed.append(_parse_override(item))
        except ConfigError as exc:
            errors.append(str(exc))
    for key, value in parsed:
        _set_dotted(data, key, value)

    schema = OmegaConf.structured(RecipeConfig)
    optional = frozenset() if require_catalogue else frozenset({"catalogue"})
    clean = _collect_errors(schema, data, "", errors, optional)
    try:
        cfg = OmegaConf.merge(schema, clean)
    except OmegaConfBaseException as exc:
        errors.append(str(exc).splitlines()[0])
        cfg = schema
    assert isinstance(cfg, DictConfig)
    errors.extend(validate_values(cfg, require_catalogue=require_catalogue))
    if errors:
        where = f"recipe '{path}'" if path is not None else "configuration"
        raise ConfigError(f"{where} has {len(errors)} error(s): " + "; ".join(errors))
    if not cfg.run_dir:
        cfg.run_dir = str(Path("runs") / cfg.name)
    if "demo" in cfg.stages and OmegaConf.is_missing(cfg, "catalogue"):
        cfg.catalogue = str(Path(cfg.run_dir) / "catalogue")  # the demo stage writes it there
    return cfg


def validate_values(cfg: DictConfig, require_catalogue: bool = True) -> list[str]:
    """Range and choice checks that types alone cannot express."""
    checks = (
        _segment_errors, _outlier_errors, _ingest_errors, _feature_errors, _caption_errors, _augment_errors,
        _codec_errors, _train_errors, _early_stopping_errors, _demo_errors, _export_errors, _generate_errors,
    )
    errors = _stage_errors(cfg, require_catalogue)
    for check in checks:
        errors.extend(check(cfg))
    return errors


def _stage_errors(cfg: DictConfig, require_catalogue: bool) -> list[str]:
    errors = [
        f"unknown stage '{stage}' in 'stages' (known: {', '.join(STAGES)})" for stage in cfg.stages if stage not in STAGES
    ]
    no_catalogue = OmegaConf.is_missing(cfg, "catalogue") or not str(cfg.catalogue).strip()
    if require_catalogue and "demo" not in cfg.stages and "ingest" in cfg.stages and no_catalogue:
        errors.append("'catalogue' is required: pass catalogue=/path/to/artist/audio")
    return errors


def _segment_errors(cfg: DictConfig) -> list[str]:
    s = cfg.segment
    errors = []
    if s.window_s <= 0 or s.hop_s <= 0:
        errors.append("segment.window_s and segment.hop_s must be > 0")
    if s.sample_rate < 8000:
        errors.append(f"segment.sample_rate must be >= 8000, got {s.sample_rate}")
    if s.n_fft <= 0 or s.hop_length <= 0 or s.hop_length > s.n_fft:
        errors.append("segment.n_fft must be > 0 and 0 < segment.hop_length <= segment.n_fft")
    return errors


def _outlier_errors(cfg: DictConfig) -> list[str]:
    o = cfg.outliers
    errors = []
    if o.track_z <= 0 or o.window_z <= 0 or not 0.0 < o.duplicate_corr <= 1.0 or not 0.0 <= o.noise_coherence < 1.0:
        errors.append("outliers.track_z and outliers.window_z must be > 0, outliers.duplicate_corr in (0, 1] "
                      "and outliers.noise_coherence in [0, 1)")
    if o.flatness_z <= 0:
        errors.append(f"outliers.flatness_z must be > 0, got {o.flatness_z}")
    if o.embedding != "mfcc":  # the registry imports librosa: only looked at when another embedding is named
        from stylecraft.evaluate.embeddings import available_embeddings

        if o.embedding not in available_embeddings():
            errors.append(f"unknown outliers.embedding {o.embedding!r} (known: {', '.join(available_embeddings())})")
    if not 0.0 < o.clipped_share <= 1.0 or not 0.0 < o.dropout_share <= 1.0:
        errors.append(f"outliers.clipped_share and outliers.dropout_share must be in (0, 1], got {o.clipped_share} "
                      f"and {o.dropout_share}")
    return errors


def _ingest_errors(cfg: DictConfig) -> list[str]:
    errors = []
    if not 0.0 <= cfg.ingest.valid_fraction < 1.0:
        errors.append(f"ingest.valid_fraction must be in [0, 1), got {cfg.ingest.valid_fraction}")
    if not 0.0 < cfg.ingest.duplicate_corr <= 1.0:
        errors.append(f"ingest.duplicate_corr must be in (0, 1], got {cfg.ingest.duplicate_corr}")
    return errors


def _feature_errors(cfg: DictConfig) -> list[str]:
    return [
        f"segment.features: unknown feature '{name}' (known: {', '.join(FEATURE_NAMES)})"
        for name in cfg.segment.features
        if name not in FEATURE_NAMES
    ]


def _train_errors(cfg: DictConfig) -> list[str]:
    t = cfg.train
    errors = []
    if t.mode not in ("lora", "full"):
        errors.append(f"train.mode must be 'lora' or 'full', got '{t.mode}'")
    if t.mixed_precision not in ("auto", "no", "bf16", "fp16"):
        errors.append(f"train.mixed_precision must be auto|no|bf16|fp16, got '{t.mixed_precision}'")
    for key in ("max_steps", "batch_size", "grad_accum", "save_every", "keep_last", "eval_every", "log_every"):
        if t[key] < 1:
            errors.append(f"train.{key} must be >= 1, got {t[key]}")
    if t.lr <= 0:
        errors.append(f"train.lr must be > 0, got {t.lr}")
    if t.text_encoder not in ("frozen", "train"):
        errors.append(f"train.text_encoder must be frozen or train, got '{t.text_encoder}'")
    elif t.text_encoder == "train" and t.mode != "full":
        errors.append("train.text_encoder=train needs train.mode=full")
    if t.attention not in ATTENTION_CHOICES:
        errors.append(f"train.attention must be {'|'.join(ATTENTION_CHOICES)}, got '{t.attention}'")
    if not 0.0 <= t.cond_dropout < 1.0:
        errors.append(f"train.cond_dropout must be in [0, 1), got {t.cond_dropout}")
    if t.weight_decay < 0:
        errors.append(f"train.weight_decay must be >= 0, got {t.weight_decay}")
    if t.dropout is not None and not 0.0 <= t.dropout < 1.0:
        errors.append(f"train.dropout must be in [0, 1) or null, got {t.dropout}")
    if not 0.0 < t.ema.decay < 1.0:
        errors.append(f"train.ema.decay must be in (0, 1), got {t.ema.decay}")
    return errors


def _early_stopping_errors(cfg: DictConfig) -> list[str]:
    t = cfg.train
    es = t.early_stopping
    errors = []
    if es.metric not in ("val_loss", "fad", "kad"):
        errors.append(f"train.early_stopping.metric must be val_loss, fad or kad, got '{es.metric}'")
    if es.patience < 1:
        errors.append(f"train.early_stopping.patience must be >= 1, got {es.patience}")
    if es.min_delta < 0:
        errors.append(f"train.early_stopping.min_delta must be >= 0, got {es.min_delta}")
    if es.enabled and es.metric in ("fad", "kad") and t.demo.every < 1:
        errors.append(f"train.early_stopping.metric={es.metric} needs demo generations: set train.demo.every >= 1")
    es_scale = cfg.generate.guidance_scale if es.guidance_scale is None else es.guidance_scale
    if es.enabled and es.metric in ("fad", "kad") and es_scale not in list(t.demo.guidance_scales):
        errors.append(f"train.early_stopping.metric={es.metric} scores the demos of guidance scale {es_scale:g} "
                      f"(train.early_stopping.guidance_scale, else generate.guidance_scale), which is not in "
                      f"train.demo.guidance_scales {list(t.demo.guidance_scales)}")
    return errors


def _demo_errors(cfg: DictConfig) -> list[str]:
    d = cfg.train.demo
    errors = []
    if d.every < 0:
        errors.append(f"train.demo.every must be >= 0 (0: no demos), got {d.every}")
    if d.every and (not d.seeds or not d.guidance_scales):
        errors.append("train.demo.seeds and train.demo.guidance_scales must not be empty")
    if d.duration_s <= 0:
        errors.append(f"train.demo.duration_s must be > 0, got {d.duration_s}")
    if d.top_k < 0:
        errors.append(f"train.demo.top_k must be >= 0, got {d.top_k}")
    for gs in d.guidance_scales:
        if gs < 0:
            errors.append(f"train.demo.guidance_scales entries must be >= 0, got {gs}")
    return errors


def _export_errors(cfg: DictConfig) -> list[str]:
    export = cfg.train.export
    errors = []
    if export.lora not in ("merged", "adapter", "both"):
        errors.append(f"train.export.lora must be merged|adapter|both, got '{export.lora}'")
    for fmt in export.formats:
        if fmt not in EXPORT_FORMATS:
            errors.append(f"train.export.formats: unknown format '{fmt}' (known: {', '.join(EXPORT_FORMATS)})")
    if not export.formats:
        errors.append("train.export.formats must name at least one format (e.g. [transformers])")
    return errors


def _generate_errors(cfg: DictConfig) -> list[str]:
    g = cfg.generate
    errors = []
    if g.duration_s <= 0:
        errors.append(f"generate.duration_s must be > 0, got {g.duration_s}")
    if g.temperature <= 0:
        errors.append(f"generate.temperature must be > 0, got {g.temperature}")
    if g.per_prompt < 1 or g.batch_size < 1 or g.best_of < 1:
        errors.append("generate.per_prompt, generate.batch_size and generate.best_of must be >= 1")
    if g.rerank not in ("likelihood", "style"):
        errors.append(f"generate.rerank must be likelihood or style, got '{g.rerank}'")
    if not 0 <= g.beams <= 64 or not -10.0 <= g.length_penalty <= 10.0:
        errors.append("generate.beams must be in [0, 64] and generate.length_penalty in [-10, 10]")
    elif g.beams and g.best_of > 1:
        errors.append("generate.best_of reranks samples and generate.beams searches deterministically: set one of them")
    if g.long_form.window_s <= 0:
        errors.append(f"generate.long_form.window_s must be > 0, got {g.long_form.window_s}")
    elif not 0.0 <= g.long_form.context_s < g.long_form.window_s:
        errors.append(
            f"generate.long_form.context_s must be >= 0 and < window_s ({g.long_form.window_s}), got {g.long_form.context_s}"
        )
    if g.seed_audio_s < 0:
        errors.append(f"generate.seed_audio_s must be >= 0, got {g.seed_audio_s}")
    if g.prompts and g.prompts_file:
        errors.append("set generate.prompts or generate.prompts_file, not both")
    return errors + _watermark_errors(g.watermark)


def _watermark_errors(w: DictConfig) -> list[str]:
    errors = []
    if not 0.0 < w.strength <= 0.5:
        errors.append(f"generate.watermark.strength must be in (0, 0.5], got {w.strength}")
    if w.method not in ("dsp", "audioseal"):
        errors.append(f"generate.watermark.method must be dsp or audioseal, got '{w.method}'")
    if w.enabled and not str(w.key):
        errors.append("generate.watermark.key must not be empty (or set generate.watermark.enabled=false)")
    return errors


def _codec_errors(cfg: DictConfig) -> list[str]:
    c = cfg.codec
    errors = []
    if "codec" in cfg.stages:
        from stylecraft.codec.architectures import codec_config

        try:
            codec_config(c.architecture, dict(c.config))
        except ConfigError as exc:
            errors.append(str(exc))
    for key in ("batch_size", "max_steps", "save_every", "keep_last", "eval_every", "log_every", "eval_crops"):
        if c[key] < 1:
            errors.append(f"codec.{key} must be >= 1, got {c[key]}")
    if not 0 <= c.decay_steps <= c.max_steps:
        errors.append(f"codec.decay_steps must be in [0, codec.max_steps], got {c.decay_steps}")
    if c.vq_warmup_steps < 0 or c.kmeans_frames < 1:
        errors.append("codec.vq_warmup_steps must be >= 0 and codec.kmeans_frames >= 1")
    if c.crop_s <= 0 or c.lr <= 0:
        errors.append("codec.crop_s and codec.lr must be > 0")
    if not 0.0 < c.ema_decay < 1.0 or not 0.0 <= c.dead_fraction < 1.0:
        errors.append("codec.ema_decay must be in (0, 1) and codec.dead_fraction in [0, 1)")
    if len(c.gain_db) != 2 or c.gain_db[0] > c.gain_db[1]:
        errors.append(f"codec.gain_db must be [low, high] with low <= high, got {list(c.gain_db)}")
    if str(cfg.model.name).startswith("new:"):
        from stylecraft.models.presets import LM_ARCHITECTURES

        arch = str(cfg.model.name)[4:]
        if arch not in LM_ARCHITECTURES:
            errors.append(f"unknown model architecture in model.name '{cfg.model.name}' (known: "
                          f"{', '.join('new:' + a for a in LM_ARCHITECTURES)})")
    return errors


def _caption_errors(cfg: DictConfig) -> list[str]:
    c = cfg.captions
    errors = []
    if c.mode not in CAPTION_MODES:
        errors.append(f"captions.mode must be {'|'.join(CAPTION_MODES)}, got '{c.mode}'")
    if c.artist_from not in ("recipe", "folder"):
        errors.append(f"captions.artist_from must be recipe or folder, got '{c.artist_from}'")
    if c.mode == "file" and not str(c.file).strip():
        errors.append("captions.mode=file needs captions.file=/path/to/captions.csv (or .jsonl): path, caption per file")
    if c.mode != "file" and str(c.file).strip():
        errors.append(f"captions.file is set but captions.mode is '{c.mode}': set captions.mode=file to use it")
    return errors


def _augment_errors(cfg: DictConfig) -> list[str]:
    a = cfg.augment
    errors = []
    for r in a.stretch_rates:
        if not 0.5 <= r <= 2.0:
            errors.append(f"augment.stretch_rates entries must be in [0.5, 2], got {r}")
    for st in a.pitch_semitones:
        if abs(st) > 12:
            errors.append(f"augment.pitch_semitones entries must be within ±12, got {st}")
    if a.share is not None:
        planned = len(a.pitch_semitones) + len(a.stretch_rates)
        most = planned / (planned + 1)
        if not 0.0 <= a.share <= most + 1e-9:
            errors.append(
                f"augment.share must be in [0, {most:.4f}] with {planned} planned variant(s) per window "
                f"(at most {planned} variants to 1 window), got {a.share}: lower it or plan more variants"
            )
    return errors


def to_container(cfg: DictConfig) -> dict[str, Any]:
    out = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    assert isinstance(out, dict)
    return out  # type: ignore[return-value]


def section(cfg: DictConfig, name: str) -> dict[str, Any]:
    """A stage's settings as a plain dict (for hashing and stamps)."""
    out = OmegaConf.to_container(cfg[name], resolve=True)
    assert isinstance(out, dict)
    return out  # type: ignore[return-value]
