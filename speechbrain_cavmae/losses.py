"""Losses of CAV-MAE pretraining, in the style of ``speechbrain.nnet.losses``.

Authors
 * speechbrain-cavmae contributors 2026
"""

import torch
import torch.nn.functional as F
from torch import nn


class MaskedReconstructionLoss(nn.Module):
    """Mean squared error over masked patches only (the MAE objective).

    Arguments
    ---------
    norm_pix : bool
        Normalise each target patch to zero mean and unit (unbiased) variance first, as MAE's
        ``norm_pix_loss``.
    eps : float
        Added to the patch variance.

    Example
    -------
    >>> loss = MaskedReconstructionLoss(norm_pix=True)
    >>> pred, target = torch.randn(2, 8, 256), torch.randn(2, 8, 256)
    >>> mask = torch.tensor([[1.0] * 6 + [0.0] * 2] * 2)
    >>> loss(pred, target, mask).shape
    torch.Size([])
    """

    def __init__(self, norm_pix=True, eps=1e-6):
        super().__init__()
        self.norm_pix = norm_pix
        self.eps = eps

    def forward(self, pred, target, mask):
        """Compute the loss.

        Arguments
        ---------
        pred : torch.Tensor
            ``[batch, L, patch_dim]`` predictions for every patch.
        target : torch.Tensor
            ``[batch, L, patch_dim]`` patchified input.
        mask : torch.Tensor
            ``[batch, L]``, 1 for masked patches (the only ones scored).

        Returns
        -------
        torch.Tensor
            Scalar mean over masked patches of the per-patch mean squared error.
        """
        if self.norm_pix:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + self.eps) ** 0.5
        per_patch = ((pred.float() - target.float()) ** 2).mean(dim=-1)
        mask = mask.to(per_patch.dtype)
        return (per_patch * mask).sum() / mask.sum()


class ContrastiveLoss(nn.Module):
    """InfoNCE between L2-normalised audio and visual clip representations.

    The similarity matrix is ``S = norm(rep_a) @ norm(rep_v).T / temperature``. As in the
    original CAV-MAE the default is one direction: for each visual clip ``j``, a softmax over
    the audio clips of the batch (``log_softmax(S, dim=0)``) must pick audio ``j``.
    ``bidirectional=True`` averages it with the other direction.

    Arguments
    ---------
    temperature : float
        Softmax temperature (0.05 in CAV-MAE).
    bidirectional : bool
        Average both directions.

    Example
    -------
    >>> loss = ContrastiveLoss()
    >>> a, v = torch.randn(4, 32), torch.randn(4, 32)
    >>> value, acc = loss(a, v, return_accuracy=True)
    >>> value.shape, 0.0 <= float(acc) <= 1.0
    (torch.Size([]), True)
    """

    def __init__(self, temperature=0.05, bidirectional=False):
        super().__init__()
        self.temperature = temperature
        self.bidirectional = bidirectional

    def similarity(self, rep_a, rep_v):
        """``[batch, batch]`` scaled cosine similarities (rows: audio, columns: visual)."""
        rep_a = F.normalize(rep_a.float(), dim=-1)
        rep_v = F.normalize(rep_v.float(), dim=-1)
        return rep_a @ rep_v.t() / self.temperature

    def forward(self, rep_a, rep_v, return_accuracy=False):
        """Compute the loss for ``rep_a``, ``rep_v`` ``[batch, dim]``.

        Returns
        -------
        torch.Tensor or tuple
            The scalar loss, and with ``return_accuracy=True`` also the in-batch retrieval
            accuracy (fraction of clips whose match scores highest, averaged over the
            directions used).
        """
        sim = self.similarity(rep_a, rep_v)
        targets = torch.arange(sim.shape[0], device=sim.device)
        directions = [sim.t(), sim] if self.bidirectional else [sim.t()]
        # Row i of sim.t() scores visual i against every audio clip (softmax over audio).
        losses = [F.cross_entropy(logits, targets) for logits in directions]
        loss = sum(losses) / len(losses)
        if not return_accuracy:
            return loss
        with torch.no_grad():
            accs = [(logits.argmax(dim=1) == targets).float().mean() for logits in directions]
            acc = sum(accs) / len(accs)
        return loss, acc

    def accuracy(self, rep_a, rep_v):
        """In-batch retrieval accuracy only (no gradient)."""
        with torch.no_grad():
            return self.forward(rep_a, rep_v, return_accuracy=True)[1]
