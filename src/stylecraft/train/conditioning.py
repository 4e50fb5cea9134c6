"""Text conditioning of the decoder: T5 states per caption, and the training loss with condition dropout."""

from __future__ import annotations

from typing import Any, cast

import torch

from stylecraft.models.loading import ModelBundle


class TextConditioner:
    """Frozen T5 encoder states per caption, cached (captions repeat across windows).

    Each caption is encoded alone, unpadded, so its cached states depend on the caption only (not
    on the batch it first appeared in), and each batch is padded to its own longest caption.
    """

    def __init__(self, bundle: ModelBundle, device: torch.device, trainable: bool = False) -> None:
        self.encoder = cast(Any, bundle.model.text_encoder)
        self.encoder.to(device)
        self.trainable = trainable
        if not trainable:
            self.encoder.eval()
        self.device = device
        self.cache: dict[str, torch.Tensor] = {}  # caption -> [L_caption, D]

    def __call__(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.trainable:
            # Trained with the decoder (base-model pretraining): encoded per batch, with gradients
            # (and the encoder's own dropout while the model trains).
            mask = batch["attention_mask"].to(self.device)
            states = self.encoder(input_ids=batch["input_ids"].to(self.device), attention_mask=mask).last_hidden_state
            return states, mask
        return self._frozen(batch)

    @torch.no_grad()
    def _frozen(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        # model.train() flips every submodule; the frozen encoder must never apply dropout, or the
        # cached states would depend on the RNG and a resumed run would differ.
        self.encoder.eval()
        ids, mask = batch["input_ids"], batch["attention_mask"]
        for i, caption in enumerate(batch["captions"]):
            if caption not in self.cache:
                one = ids[i][mask[i].bool()][None].to(self.device)  # [1, L_caption], whatever the padding side
                out = self.encoder(input_ids=one, attention_mask=torch.ones_like(one)).last_hidden_state
                self.cache[caption] = out[0].float()
        return pad_states([self.cache[c] for c in batch["captions"]])


def pad_states(states: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-caption states ``[L_i, D]`` -> zero-padded ``[B, max L_i, D]`` and attention mask ``[B, max L_i]``."""
    longest = max(s.shape[0] for s in states)
    out = states[0].new_zeros((len(states), longest, states[0].shape[1]))
    mask = torch.zeros((len(states), longest), dtype=torch.long, device=states[0].device)
    for i, s in enumerate(states):
        out[i, : s.shape[0]] = s
        mask[i, : s.shape[0]] = 1
    return out, mask


def loss_on_batch(
    model: torch.nn.Module,
    cond: TextConditioner,
    batch: dict[str, Any],
    cond_dropout: float,
    dropout_key: tuple[int, ...] = (0,),
) -> torch.Tensor:
    """Cross-entropy over the K codebooks; a ``cond_dropout`` share of rows get the null condition
    (zeroed encoder states and mask), the form transformers feeds at classifier-free guidance.

    Which rows are dropped depends only on ``dropout_key`` (seed, step, micro-batch, rank), not on
    the global RNG, so a resumed run drops exactly the rows an uninterrupted one would.
    """
    states, mask = cond(batch)
    if cond_dropout > 0 and model.training:
        gen = torch.Generator().manual_seed(hash(dropout_key) & 0x7FFF_FFFF_FFFF_FFFF)
        drop = (torch.rand(states.shape[0], generator=gen) < cond_dropout).to(states.device)
        keep = (~drop).to(states.dtype)
        states = states * keep[:, None, None]
        mask = mask * (~drop).to(mask.dtype)[:, None]
    out = model(
        encoder_outputs=(states,),
        attention_mask=mask,
        decoder_input_ids=batch["decoder_input_ids"].to(states.device),
        labels=batch["labels"].to(states.device),
    )
    return out.loss


def item_losses(model: torch.nn.Module, cond: TextConditioner, batch: dict[str, Any]) -> torch.Tensor:
    """Each item's loss [B]: per codebook, the mean cross-entropy over its labelled frames, then the
    mean over codebooks (what :func:`loss_on_batch` gives for a batch of that one item)."""
    states, mask = cond(batch)
    labels = batch["labels"].to(states.device)  # [B, S, K], -100 where nothing is predicted
    out = model(encoder_outputs=(states,), attention_mask=mask,
                decoder_input_ids=batch["decoder_input_ids"].to(states.device))
    b, s, k = labels.shape
    logits = out.logits.reshape(b, k, -1, out.logits.shape[-1])[:, :, -s:]  # [B, K, S, V]
    target = labels.permute(0, 2, 1)  # [B, K, S]
    ce = torch.nn.functional.cross_entropy(logits.float().permute(0, 3, 1, 2), target, ignore_index=-100,
                                           reduction="none")
    labelled = (target != -100).to(ce.dtype)
    return ((ce * labelled).sum(-1) / labelled.sum(-1).clamp(min=1)).mean(-1)
