"""Next-token loss on answer tokens, summed, so a step can be normalised by its global token count.

A mean over each micro-batch's own tokens weights answers differently depending on how samples are
split across micro-batches and processes. Summing here and dividing by the number of answer tokens
in the whole optimizer step (all micro-batches, all processes) makes one process with batch 8 and two
processes with batch 4, or batch 8 and batch 4 x 2 accumulation, compute the same gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def count_answer_tokens(labels: torch.Tensor) -> int:
    """Tokens that carry loss: labels that are not IGNORE_INDEX, after the one-position shift.

    Args:
        labels: [B, T] token ids, IGNORE_INDEX outside the answers.

    Returns:
        The number of predicted answer tokens.
    """
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


def answer_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy of predicting token t+1 from position t, answer tokens only.

    Args:
        logits: [B, T, V] model outputs.
        labels: [B, T] token ids, IGNORE_INDEX outside the answers.

    Returns:
        A scalar float32 tensor (0 when no token carries loss; still attached to the graph).
    """
    # float32: bf16 log-softmax over a large vocabulary loses precision the loss curve can see.
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:].to(shift_logits.device)
    return F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1),
        ignore_index=IGNORE_INDEX, reduction="sum",
    )
