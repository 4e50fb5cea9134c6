"""Beam search over MusicGen's delayed codebooks, with classifier-free guidance inside the beam.

transformers' MusicGen ``generate`` refuses ``num_beams > 1``, so this is a decoding loop of its
own over the real model: the text encoder runs once, the decoder runs one position at a time on
its key/value cache, and the cache is reordered whenever beams are reselected.

The search space is the delayed sequence transformers' ``build_delay_pattern_mask`` lays out:
position ``p`` of codebook ``k`` holds frame ``p - 1 - delay[k]`` (``delay[k] = k`` for mono
models; left and right codebooks of stereo models share ``k // 2``), pads before and after, and
the prompt's codes where a continuation gives them. At each position every codebook that holds
a new frame is predicted from the same prefix, independently (one head each), so a step's joint
log-probability is the sum of the codebooks' own. The ``width`` best joint steps of each beam are
found exactly by merging the codebooks' top-``width`` lists one codebook at a time (a combination
in the top ``width`` has every partial combination in the top ``width`` of its own codebooks).

Guidance: with ``guidance_scale > 1`` each beam also runs on the null condition (zeroed text
states and mask, as transformers does) and its logits are ``uncond + (cond - uncond) * scale``,
transformers' ``ClassifierFreeGuidanceLogitsProcessor``; a beam's score is the sum of the
log-softmax of those guided logits over its new tokens.

Plain beam search can lose the greedy path (it drops out when ``width`` other prefixes score
higher, and their continuations may end lower), so for ``width > 1`` the greedy hypothesis is
decoded beside the beam (one more row) and competes for the final pick: a wider beam never
returns a sequence less likely, under the search's own score, than greedy decoding.

Length penalty: the final score is ``sum of log-probabilities / new tokens ** length_penalty``
(transformers' convention). MusicGen has no end token, so every hypothesis of one call has the
same length, and the penalty rescales the reported score without reordering hypotheses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from stylecraft.errors import StylecraftError
from stylecraft.generate.codes import codebook_delays
from stylecraft.models.kv_cache import CACHE
from stylecraft.models.loading import ModelBundle

MAX_WIDTH = 64


@dataclass
class BeamResult:
    """Codes and scores of one beam search per prompt."""

    codes: torch.Tensor  # [B, K, P + N] (long)
    log_likelihood: torch.Tensor  # [B] summed guided log-probability of the new tokens (float64)
    score: torch.Tensor  # [B] log_likelihood / new_tokens ** length_penalty
    new_tokens: int  # tokens scored per piece (K * N)
    from_greedy: list[bool]  # [B] whether the greedy companion won the final pick


def validate_beam(width: int, length_penalty: float) -> None:
    """One-line errors for beam settings no search can use."""
    if not 1 <= width <= MAX_WIDTH:
        raise StylecraftError(f"--beams must be between 1 and {MAX_WIDTH}, got {width}")
    if not -10.0 <= length_penalty <= 10.0:
        raise StylecraftError(f"--length-penalty must be in [-10, 10], got {length_penalty}")


def delayed_layout(
    delays: list[int], prompt: torch.Tensor, new_frames: int, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The delayed sequence of a piece and which of its places are free.

    Args:
        delays: per-codebook delay (:func:`codebook_delays`).
        prompt: codes ``[K, P]`` that open the piece (P may be 0).
        new_frames: frames to decode after the prompt.
        pad_id: the pad / start token id.

    Returns:
        ``(tokens [K, S], free [K, S])`` with ``S = 1 + P + N + max(delays)``: position 0 is the
        start token, forced places hold pads or prompt codes, free places hold ``pad_id``.
    """
    k, p = prompt.shape
    total = p + new_frames
    s = 1 + total + max(delays)
    tokens = torch.full((k, s), pad_id, dtype=torch.long)
    free = torch.zeros(k, s, dtype=torch.bool)
    for i, d in enumerate(delays):
        tokens[i, 1 + d : 1 + d + p] = prompt[i]
        free[i, 1 + d + p : 1 + d + total] = True
    return tokens, free


def top_joint(logp: torch.Tensor, free: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``width`` best joint choices of one step, per row.

    Args:
        logp: log-probabilities ``[R, K, V]``.
        free: ``[K]`` codebooks that choose a token at this step (others are forced and score 0).
        width: how many joint choices to return.

    Returns:
        ``(scores [R, W], tokens [R, W, K])`` sorted best first, ``W = min(width, V ** free)``;
        forced codebooks' tokens are -1.
    """
    r, k, v = logp.shape
    scores = torch.zeros(r, 1, dtype=logp.dtype, device=logp.device)
    tokens = torch.full((r, 1, k), -1, dtype=torch.long, device=logp.device)
    for i in torch.nonzero(free).flatten().tolist():
        top_s, top_t = logp[:, i].topk(min(width, v), dim=-1)  # [R, w]
        joint = scores[:, :, None] + top_s[:, None, :]  # [R, W, w]
        flat = joint.reshape(r, -1)
        keep_s, keep_i = flat.topk(min(width, flat.shape[1]), dim=-1)
        src, pick = keep_i // top_s.shape[1], keep_i % top_s.shape[1]
        tokens = tokens.gather(1, src[..., None].expand(-1, -1, k)).clone()
        tokens[..., i] = top_t.gather(1, pick)
        scores = keep_s
    return scores, tokens


class _Decoder:
    """The MusicGen decoder over a fixed condition, one position at a time on its KV cache."""

    def __init__(self, bundle: ModelBundle, text: dict[str, torch.Tensor], rows: int, guidance_scale: float) -> None:
        model: Any = bundle.model
        self.model = model
        self.k = bundle.num_codebooks
        self.rows = rows
        self.guided = guidance_scale > 1
        self.scale = guidance_scale
        states = model.text_encoder(**text).last_hidden_state  # [1, L, D]
        mask = text["attention_mask"]
        states, mask = states.expand(rows, -1, -1), mask.expand(rows, -1)
        if self.guided:  # the null condition transformers uses: zeroed states and mask
            states = torch.cat([states, torch.zeros_like(states)])
            mask = torch.cat([mask, torch.zeros_like(mask)])
        self.states, self.mask = states, mask
        self.cache: Any = None

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed ``tokens [R, K, L]`` (the next L positions); log-probabilities ``[R, K, V]`` of the next one."""
        ids = tokens.reshape(self.rows * self.k, -1).to(self.model.device)
        if self.guided:
            ids = ids.repeat(2, 1)
        out = self.model(
            encoder_outputs=(self.states,), attention_mask=self.mask, decoder_input_ids=ids,
            use_cache=True, **{CACHE: self.cache},
        )
        self.cache = getattr(out, CACHE)
        logits = out.logits[:, -1].float().reshape(-1, self.k, out.logits.shape[-1])  # [R or 2R, K, V]
        if self.guided:
            cond, uncond = logits.split(self.rows)
            logits = uncond + (cond - uncond) * self.scale
        return torch.log_softmax(logits, dim=-1)

    def reorder(self, rows: torch.Tensor) -> None:
        idx = torch.cat([rows, rows + self.rows]) if self.guided else rows
        self.cache.reorder_cache(idx.to(self.model.device))


@torch.no_grad()
def beam_search_one(
    bundle: ModelBundle,
    text: dict[str, torch.Tensor],
    new_frames: int,
    prompt: torch.Tensor,
    width: int,
    guidance_scale: float,
) -> tuple[torch.Tensor, float, bool]:
    """Beam search for one prompt: codes ``[K, P + N]``, summed log-probability, greedy companion won."""
    delays = codebook_delays(bundle)
    layout, free = delayed_layout(delays, prompt.cpu().long(), new_frames, bundle.pad_token_id)
    companion = width > 1
    rows = width + int(companion)  # beams first, then the greedy companion
    dec = _Decoder(bundle, text, rows, guidance_scale)
    seq = layout[None].repeat(rows, 1, 1)  # [R, K, S]
    first = 1 + prompt.shape[-1]  # positions before it are all forced: fed at once
    logp = dec.step(seq[..., :first])
    # Only beam 0 is live at first; the others start at -inf so that no duplicate is kept.
    scores = torch.full((width,), float("-inf"), dtype=torch.float64)
    scores[0] = 0.0
    greedy_score = 0.0
    for pos in range(first, seq.shape[-1]):
        step_free = free[:, pos]
        joint_s, joint_t = top_joint(logp[:width], step_free, width)  # [W, W'], [W, W', K]
        total = scores[:, None] + joint_s.double().cpu()
        best_s, best_i = total.reshape(-1).topk(width)
        origin = best_i // joint_s.shape[1]
        chosen = joint_t.cpu().reshape(-1, bundle.num_codebooks)[best_i]  # [W, K]
        order = origin
        if companion:
            g_s, g_t = top_joint(logp[width:], step_free, 1)
            greedy_score += float(g_s[0, 0])
            chosen = torch.cat([chosen, g_t[:, 0].cpu()])
            order = torch.cat([origin, torch.tensor([width])])
        seq = seq[order]
        seq[:, step_free, pos] = chosen[:, step_free]
        scores = best_s
        if pos + 1 < seq.shape[-1]:
            if not torch.equal(order, torch.arange(rows)):
                dec.reorder(order)
            logp = dec.step(seq[..., pos : pos + 1])
    best, best_score = 0, float(scores[0])
    won = companion and greedy_score > best_score
    if won:
        best, best_score = width, greedy_score
    frames = prompt.shape[-1] + new_frames
    codes = torch.stack([seq[best, i, 1 + d : 1 + d + frames] for i, d in enumerate(delays)])
    return codes, best_score, won


def beam_codes(
    bundle: ModelBundle,
    text: dict[str, torch.Tensor],
    new_frames: int,
    *,
    prompt: torch.Tensor | None = None,
    width: int = 4,
    guidance_scale: float = 3.0,
    length_penalty: float = 1.0,
) -> BeamResult:
    """Beam search for each prompt of a batch (each searched on its own).

    Args:
        text: tokenized prompts (:func:`stylecraft.generate.codes.text_inputs`), batch B.
        new_frames: frames to add after ``prompt``.
        prompt: codes ``[B, K, P]`` to continue (None: start from nothing).
        width: beams kept per step (1: greedy decoding).
        guidance_scale: classifier-free guidance inside the beam (<= 1: none).
        length_penalty: exponent of the length normalisation of the final score.

    Returns:
        :class:`BeamResult` with codes ``[B, K, P + new_frames]``, the prompt's codes unchanged.
    """
    validate_beam(width, length_penalty)
    if bundle.model_type != "musicgen":
        raise StylecraftError(f"beam search supports text-conditioned MusicGen models; '{bundle.name}' is {bundle.model_type}")
    b = int(text["input_ids"].shape[0])
    k = bundle.num_codebooks
    if prompt is None:
        prompt = torch.zeros(b, k, 0, dtype=torch.long)
    out, lls, won = [], [], []
    for i in range(b):
        row_text = {name: t[i : i + 1] for name, t in text.items()}
        codes, ll, greedy_won = beam_search_one(bundle, row_text, new_frames, prompt[i], width, guidance_scale)
        out.append(codes)
        lls.append(ll)
        won.append(greedy_won)
    n_tokens = k * new_frames
    ll_t = torch.tensor(lls, dtype=torch.float64)
    return BeamResult(
        codes=torch.stack(out), log_likelihood=ll_t, score=ll_t / max(1, n_tokens) ** length_penalty,
        new_tokens=n_tokens, from_greedy=won,
    )


@torch.no_grad()
def guided_log_likelihood(
    bundle: ModelBundle, text: dict[str, torch.Tensor], codes: torch.Tensor, prompt_frames: int, guidance_scale: float
) -> torch.Tensor:
    """Summed guided log-probability ``[B]`` of frames ``prompt_frames..`` of ``codes [B, K, T]``.

    One teacher-forced pass without cache over the whole delayed sequence (conditional, and null
    condition when guided): the quantity beam search maximises, computed independently of it.
    """
    model: Any = bundle.model
    b, k, t = codes.shape
    delays = codebook_delays(bundle)
    total = torch.zeros(b, dtype=torch.float64)
    for i in range(b):
        seq, free = delayed_layout(delays, codes[i, :, :prompt_frames], t - prompt_frames, bundle.pad_token_id)
        for j, d in enumerate(delays):
            seq[j, 1 + d + prompt_frames : 1 + d + t] = codes[i, j, prompt_frames:]
        ids = seq[:, :-1].to(model.device)  # [K, S - 1]: position p predicts p + 1
        states = model.text_encoder(**{n: v[i : i + 1] for n, v in text.items()}).last_hidden_state
        mask = text["attention_mask"][i : i + 1]
        guided = guidance_scale > 1
        if guided:
            states, mask, ids = torch.cat([states, torch.zeros_like(states)]), torch.cat([mask, torch.zeros_like(mask)]), ids.repeat(2, 1)
        logits = model(encoder_outputs=(states,), attention_mask=mask, decoder_input_ids=ids).logits
        logits = logits.float().reshape(-1, k, seq.shape[1] - 1, logits.shape[-1])
        if guided:
            logits = logits[1] + (logits[0] - logits[1]) * guidance_scale
        else:
            logits = logits[0]
        logp = torch.log_softmax(logits, dim=-1)  # [K, S - 1, V]
        target = seq[:, 1:]
        mask_free = free[:, 1:]
        picked = logp.gather(-1, target.clamp_max(logp.shape[-1] - 1)[..., None].to(logp.device))[..., 0].cpu()
        total[i] = picked[mask_free].double().sum()
    return total
