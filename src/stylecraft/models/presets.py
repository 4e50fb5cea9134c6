"""The ``tiny``, ``tiny-melody`` and ``tiny-stereo`` presets: MusicGen's real architecture (T5 text encoder, EnCodec, MusicGen decoder)
at toy sizes, deterministic random init, built offline.

A randomly initialised EnCodec has all-zero codebooks (every code would be 0, and training would
look trivially perfect), so the tiny preset fits its residual codebooks by k-means on the encoder
outputs of deterministic synthesised music.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import numpy as np
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    EncodecConfig,
    GenerationConfig,
    MusicgenConfig,
    MusicgenDecoderConfig,
    MusicgenForConditionalGeneration,
    MusicgenMelodyConfig,
    MusicgenMelodyDecoderConfig,
    MusicgenMelodyForConditionalGeneration,
    PreTrainedTokenizerFast,
    T5Config,
)

TINY_SEED = 1234
TINY_CODEBOOK_SIZE = 256
TINY_CODEBOOKS = 4
SAMPLE_RATE = 32000


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level text tokenizer (ids: 0 pad, 1 eos, 2 unk, 3..258 bytes) that needs no download."""
    specials = ["<pad>", "</s>", "<unk>"]
    vocab = {tok: i for i, tok in enumerate(specials)}
    byte_chars = pre_tokenizers.ByteLevel.alphabet()
    for ch in sorted(byte_chars):
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False), pre_tokenizers.Split("", "isolated")]
    )
    from tokenizers import decoders, processors

    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    fast.model_max_length = 256
    return fast


def tiny_config() -> MusicgenConfig:
    text = T5Config(
        vocab_size=259, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4,
        pad_token_id=0, eos_token_id=1,
    )
    audio = EncodecConfig(
        sampling_rate=SAMPLE_RATE, audio_channels=1, num_filters=8, upsampling_ratios=[8, 5, 4, 4],
        codebook_size=TINY_CODEBOOK_SIZE, codebook_dim=64, hidden_size=64, num_lstm_layers=1,
        num_residual_layers=1, target_bandwidths=[1.6], normalize=False, use_causal_conv=False,
        chunk_length_s=None, overlap=None,
    )  # 4 codebooks x 8 bits x 50 Hz = 1.6 kbps
    decoder = MusicgenDecoderConfig(
        vocab_size=TINY_CODEBOOK_SIZE, max_position_embeddings=2048, num_hidden_layers=2, ffn_dim=256,
        num_attention_heads=4, hidden_size=64, num_codebooks=TINY_CODEBOOKS, audio_channels=1,
        pad_token_id=TINY_CODEBOOK_SIZE, bos_token_id=TINY_CODEBOOK_SIZE, dropout=0.0,
    )
    # MusicGen reads the start token from the decoder config (not a constructor argument in v5).
    decoder.decoder_start_token_id = TINY_CODEBOOK_SIZE
    return MusicgenConfig(text_encoder=text.to_dict(), audio_encoder=audio.to_dict(), decoder=decoder.to_dict())


def generation_config(codebook_size: int) -> GenerationConfig:
    return GenerationConfig(
        decoder_start_token_id=codebook_size, pad_token_id=codebook_size, bos_token_id=codebook_size,
        do_sample=True, guidance_scale=3.0, max_length=1500, top_k=250,
    )


def kmeans(x: torch.Tensor, k: int, iters: int, generator: torch.Generator) -> torch.Tensor:
    """Plain Lloyd k-means on rows of ``x`` [N, D]; empty clusters are re-seeded from random rows."""
    idx = torch.randperm(x.shape[0], generator=generator)[:k]
    centers = x[idx].clone()
    for _ in range(iters):
        assign = torch.cdist(x, centers).argmin(dim=1)
        sums = torch.zeros_like(centers).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)
        empty = counts == 0
        centers = torch.where(empty[:, None], centers, sums / counts.clamp_min(1)[:, None])
        if empty.any():
            refill = torch.randint(0, x.shape[0], (int(empty.sum()),), generator=generator)
            centers[empty] = x[refill]
    return centers


@torch.no_grad()
def fit_codebooks(
    model: MusicgenForConditionalGeneration, audio: np.ndarray, seed: int = 0, iters: int = 12, n_q: int | None = None
) -> None:
    """Set the first ``n_q`` (default: the decoder's codebooks) residual codebooks by k-means on ``audio`` [B, samples]."""
    threads = torch.get_num_threads()
    # One thread: float sums in the encoder and k-means depend on how work is split over threads,
    # and a preset must have the same weights whoever builds (and caches) it.
    torch.set_num_threads(1)
    try:
        _fit_codebooks(model, audio, seed, iters, n_q)
    finally:
        torch.set_num_threads(threads)


def _fit_codebooks(model: Any, audio: np.ndarray, seed: int, iters: int, n_q: int | None) -> None:
    enc: Any = model.audio_encoder
    x = torch.from_numpy(np.asarray(audio, dtype=np.float32))[:, None, :]  # [B, 1, S]
    emb = enc.encoder(x)  # [B, D, T]
    residual = emb.transpose(1, 2).reshape(-1, emb.shape[1])  # [N, D]
    gen = torch.Generator().manual_seed(seed)
    n_q = n_q or int(cast(Any, model.config).decoder.num_codebooks)
    for layer in enc.quantizer.layers[:n_q]:
        cb = layer.codebook
        centers = kmeans(residual, cb.embed.shape[0], iters, gen)
        cb.embed.copy_(centers)
        cb.embed_avg.copy_(centers)
        cb.cluster_size.fill_(1.0)
        cb.inited.fill_(True)
        residual = residual - centers[torch.cdist(residual, centers).argmin(dim=1)]


def calibration_audio(seconds: float = 20.0, n: int = 3) -> np.ndarray:
    """Deterministic synthesised music [n, samples] used to fit the tiny codebooks."""
    from stylecraft.audio.synth import synth_track

    clips = [synth_track(seconds, sample_rate=SAMPLE_RATE, seed=TINY_SEED + i, channels=1)[:, 0] for i in range(n)]
    return np.stack(clips)


def build_tiny() -> tuple[MusicgenForConditionalGeneration, PreTrainedTokenizerFast]:
    """The tiny preset: same weights on every machine and every call."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        model = MusicgenForConditionalGeneration(tiny_config())
    model.generation_config = generation_config(TINY_CODEBOOK_SIZE)
    fit_codebooks(model, calibration_audio(), seed=TINY_SEED)
    model.eval()
    return model, byte_tokenizer()


def tiny_melody_config() -> MusicgenMelodyConfig:
    """MusicGen-Melody at the tiny sizes: the same T5, EnCodec and decoder sizes as ``tiny``.

    The melody decoder has no cross-attention: text states and chroma frames are projected to the
    decoder width and prepended to the code sequence, so both count against its positions.
    """
    base: Any = tiny_config()  # transformers types sub-configs loosely (dict | config | None)
    known = MusicgenMelodyDecoderConfig().to_dict()
    decoder = MusicgenMelodyDecoderConfig(**{k: v for k, v in base.decoder.to_dict().items() if k in known})
    decoder.decoder_start_token_id = TINY_CODEBOOK_SIZE
    return MusicgenMelodyConfig(
        text_encoder=base.text_encoder.to_dict(), audio_encoder=base.audio_encoder.to_dict(),
        decoder=decoder.to_dict(), num_chroma=12, chroma_length=235,
    )  # 235 chroma frames = 30 s at hop 4096 / 32 kHz, as in facebook/musicgen-melody


def build_tiny_melody() -> tuple[MusicgenMelodyForConditionalGeneration, PreTrainedTokenizerFast]:
    """The tiny-melody preset: deterministic init, codebooks fitted as for ``tiny``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        model = MusicgenMelodyForConditionalGeneration(tiny_melody_config())
        # At the default init (std 0.02) the chroma projection barely moves a random decoder's
        # logits, so no melody would change a sample; unit scale lets the chroma steer the toy
        # model the way a trained one is steered.
        with torch.no_grad():
            model.audio_enc_to_dec_proj.weight.normal_(0.0, 1.0)
    model.generation_config = generation_config(TINY_CODEBOOK_SIZE)
    fit_codebooks(cast(Any, model), calibration_audio(), seed=TINY_SEED)
    model.eval()
    return model, byte_tokenizer()


def tiny_stereo_config() -> MusicgenConfig:
    """MusicGen-Stereo at the tiny sizes: the mono EnCodec of ``tiny`` applied to each channel.

    As in facebook/musicgen-stereo-*, the decoder predicts ``2 x 4`` codebooks interleaved left,
    right, left, right … (audiocraft's ``interleave_stereo_codebooks``), and the two codebooks of
    one level share a delay.
    """
    base: Any = tiny_config()
    decoder = MusicgenDecoderConfig(**{**base.decoder.to_dict(), "num_codebooks": 2 * TINY_CODEBOOKS, "audio_channels": 2})
    decoder.decoder_start_token_id = TINY_CODEBOOK_SIZE
    return MusicgenConfig(text_encoder=base.text_encoder.to_dict(), audio_encoder=base.audio_encoder.to_dict(),
                          decoder=decoder.to_dict())


def build_tiny_stereo() -> tuple[MusicgenForConditionalGeneration, PreTrainedTokenizerFast]:
    """The tiny-stereo preset: deterministic init, codebooks fitted as for ``tiny``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        model = MusicgenForConditionalGeneration(tiny_stereo_config())
    model.generation_config = generation_config(TINY_CODEBOOK_SIZE)
    fit_codebooks(model, calibration_audio(), seed=TINY_SEED, n_q=TINY_CODEBOOKS)
    model.eval()
    return model, byte_tokenizer()


BUILDERS: dict[str, Callable[[], tuple[Any, PreTrainedTokenizerFast]]] = {
    "tiny": build_tiny,
    "tiny-melody": build_tiny_melody,
    "tiny-stereo": build_tiny_stereo,
}


# Architectures of a new, randomly initialised MusicGen around a trained codec ("new:<name>" in
# model.name): base-model pretraining. The text encoder is a small T5 over the byte tokenizer,
# trained with the decoder (train.text_encoder=train), since no pretrained T5 is at hand offline.
LM_ARCHITECTURES: dict[str, dict[str, dict[str, Any]]] = {
    "tiny": {
        "text": {"d_model": 64, "d_kv": 16, "d_ff": 128, "num_layers": 2, "num_heads": 4},
        "decoder": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "ffn_dim": 256,
                    "dropout": 0.0},
    },
    # stylecraft-mini: 12.6M decoder weights; samples faster than realtime on two CPU cores.
    "mini": {
        "text": {"d_model": 128, "d_kv": 32, "d_ff": 512, "num_layers": 4, "num_heads": 4},
        "decoder": {"hidden_size": 256, "num_hidden_layers": 8, "num_attention_heads": 4, "ffn_dim": 1024,
                    "dropout": 0.1},
    },
}


def new_config(architecture: str, codec_config: EncodecConfig) -> MusicgenConfig:
    """A MusicGen config of a named size whose decoder models ``codec_config``'s codebooks."""
    arch = LM_ARCHITECTURES[architecture]
    text = T5Config(vocab_size=259, pad_token_id=0, eos_token_id=1, **arch["text"])
    size = int(codec_config.codebook_size)
    decoder = MusicgenDecoderConfig(
        vocab_size=size, max_position_embeddings=2048, num_codebooks=int(codec_config.num_quantizers),
        audio_channels=1, pad_token_id=size, bos_token_id=size, **arch["decoder"],
    )
    decoder.decoder_start_token_id = size
    return MusicgenConfig(text_encoder=text.to_dict(), audio_encoder=codec_config.to_dict(), decoder=decoder.to_dict())


def build_new(architecture: str, codec: Any, seed: int) -> tuple[MusicgenForConditionalGeneration, PreTrainedTokenizerFast]:
    """A randomly initialised MusicGen of ``architecture`` (seeded) holding the trained ``codec``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MusicgenForConditionalGeneration(new_config(architecture, codec.config))
    model.audio_encoder.load_state_dict(codec.state_dict())
    model.generation_config = generation_config(int(codec.config.codebook_size))
    model.eval()
    return model, byte_tokenizer()
