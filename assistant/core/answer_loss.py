"""The loss on answer tokens only, shared by training (CompletionLossTrainer) and evaluation (reference
perplexity): the LM head runs only at the positions whose next token carries a label. Gemma's head maps
640 numbers to 262,144 logits; over a whole prompt it is most of the step, over the answer a small part.
"""
from __future__ import annotations

IGNORE = -100      # label value the loss skips (prompt tokens, padding, packed-sequence starts)


def answer_token_losses(model, inputs: dict, labels):
    """Cross-entropy of every labelled token, (n,), and the row each sits in, (n,).

    `inputs` go to the model as they are; `labels` is (rows, seq) with IGNORE where no loss is."""
    import torch
    import torch.nn.functional as F

    # Position p predicts token p + 1: keep p where the next label carries loss.
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE
    targets = labels[:, 1:][keep[:, :-1]]                                       # (n,)
    logits = model(**inputs, logits_to_keep=keep).logits.float()                # (n, vocab)
    losses = F.cross_entropy(logits, targets, reduction="none")
    rows = torch.arange(labels.shape[0], device=labels.device).unsqueeze(1).expand_as(labels)[keep]
    return losses, rows
