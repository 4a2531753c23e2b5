"""CAV-MAE Sync in the training loop: what the brains call, one line each.

* :func:`contrastive_objective`: the contrastive loss averaged over the representation
  pairs of :meth:`~speechbrain_cavmae.model.cavmae.CAVMAE.contrastive_representations`
  (mean tokens for CAV-MAE; global tokens, or global and local, for Sync).
* :func:`sync_mask_ratio_step`: the multi-ratio masking draws keyed to the optimizer step,
  which SpeechBrain checkpoints, so a resumed run draws the ratios the interrupted one
  would have (the model's own forward counter is not in its state dict).
* :func:`encode_tokens`: the audio and visual token sequences of ``model.encode``, which
  returns two more (the global tokens) for a Sync model.
* :func:`finetune_pairs_forward`, :func:`pair_logits`, :func:`pool_pairs`: a Sync
  classifier evaluated on the 16 frame-segment pairs of a clip, their probabilities pooled
  by mean or max (``pair_pooling``).
* :func:`event_localization` and :func:`learning_check`: does a pretrained model find when
  a sound is seen? (the learning check of ``docs/sync.md`` on the clips of
  :mod:`speechbrain_cavmae.data.toy_events`).

Authors
 * speechbrain-cavmae contributors 2026
"""

import torch


def contrastive_objective(model, out, loss_fn):
    """The contrastive loss and in-batch accuracy, averaged over the model's pairs.

    Arguments
    ---------
    model : CAVMAE
        The (unwrapped) pretraining model.
    out : dict
        Its forward output.
    loss_fn : callable
        ``loss_fn(rep_a, rep_v, return_accuracy=True) -> (loss, acc)``
        (:class:`~speechbrain_cavmae.losses.ContrastiveLoss`).

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        Scalar loss and accuracy.

    Example
    -------
    >>> from speechbrain_cavmae.losses import ContrastiveLoss
    >>> from speechbrain_cavmae.model.cavmae import CAVMAE
    >>> model = CAVMAE(img_size=32, audio_length=64, embed_dim=32, num_heads=4,
    ...                modality_specific_depth=1, decoder_embed_dim=16, decoder_depth=1,
    ...                decoder_num_heads=2, global_tokens=True, global_local_loss=True)
    >>> out = model(torch.randn(2, 64, 128), torch.randn(2, 3, 32, 32))
    >>> loss, acc = contrastive_objective(model, out, ContrastiveLoss())
    >>> loss.shape
    torch.Size([])
    """
    pairs = model.contrastive_representations(out)
    losses, accs = zip(*(loss_fn(a, v, return_accuracy=True) for a, v in pairs))
    return sum(losses) / len(losses), sum(accs) / len(accs)


def sync_mask_ratio_step(model, optimizer_step):
    """Key the multi-ratio masking draw of the next training forward to ``optimizer_step``
    (every DDP process steps together, and SpeechBrain restores the counter on resume).
    With gradient accumulation the forwards of one optimizer step share their ratios.
    No-op for a model without multi-ratio masking."""
    if getattr(model, "multi_ratio_masking", False):
        model.mask_ratio_step = int(optimizer_step)


def encode_tokens(model, audio, image):
    """``(audio_tokens, visual_tokens)`` of ``model.encode`` (a Sync model with global
    tokens returns the global tokens after them: dropped here)."""
    return model.encode(audio, image)[:2]


#: How a Sync classifier pools the class probabilities of a clip's frame-segment pairs.
PAIR_POOLING = ("mean", "max")


def check_pair_pooling(pooling):
    """Raise ``ValueError`` naming ``pair_pooling`` unless it is one of
    :data:`PAIR_POOLING` (checked when the brain is built, not after training)."""
    if pooling not in PAIR_POOLING:
        raise ValueError(f"pair_pooling={pooling!r}; expected one of {PAIR_POOLING}")


def pair_logits(model, fbanks, frames, mode=None):
    """Logits of each frame-segment pair: ``[batch, K, classes]`` for segments
    ``[batch, K, audio_length, n_mels]`` and frames ``[batch, K, 3, H, W]`` (each pair
    through the classifier as one sample, all pairs as one batch).

    Example
    -------
    >>> from speechbrain_cavmae.model.classifier import CAVMAEClassifier
    >>> model = CAVMAEClassifier(3, img_size=32, audio_length=32, embed_dim=32, num_heads=4,
    ...                          modality_specific_depth=1, num_register_tokens=2)
    >>> pair_logits(model, torch.randn(2, 4, 32, 128), torch.randn(2, 4, 3, 32, 32)).shape
    torch.Size([2, 4, 3])
    """
    b, k = frames.shape[:2]
    logits = model(fbanks.flatten(0, 1), frames.flatten(0, 1), mode)
    return logits.unflatten(0, (b, k))


def pool_pairs(frame_logits, task, pooling="mean"):
    """A clip's class probabilities ``[batch, classes]`` from its pairs' logits
    ``[batch, K, classes]``: each pair's scores under the ``task``'s activation (a row of
    :mod:`speechbrain_cavmae.model.tasks`), then the mean over pairs (as CAV-MAE's
    multi-frame evaluation) or, ``pooling="max"``, the maximum (a class heard and seen at
    one moment of the clip counts fully).

    Example
    -------
    >>> from speechbrain_cavmae.model.tasks import get_task
    >>> logits, task = torch.tensor([[[4.0, -4.0], [-4.0, -4.0]]]), get_task("multilabel")
    >>> pool_pairs(logits, task, "max")[0, 0] > pool_pairs(logits, task, "mean")[0, 0]
    tensor(True)
    """
    from speechbrain_cavmae.model.tasks import average_frame_predictions

    if pooling == "mean":
        return average_frame_predictions(frame_logits, task.loss)
    check_pair_pooling(pooling)
    return task.scores(frame_logits).max(dim=1).values


def finetune_pairs_forward(model, batch, audio, image, mode):
    """The fine-tuning brain's test-time forward over a Sync clip's frame-segment pairs
    (``fbanks`` and ``frames`` in the batch: ``frame_segments`` with ``multi_frame_eval``):
    ``{"logits": the batch's pair, "frame_logits": every pair [batch, K, classes]}``;
    ``None`` when the batch holds no segments (the brain's usual path)."""
    fbanks = getattr(batch, "fbanks", None)
    frames = getattr(batch, "frames", None)
    if fbanks is None or frames is None:
        return None
    return {"logits": model(audio, image, mode),
            "frame_logits": pair_logits(model, fbanks.data.float(), frames.data.float(), mode)}


def event_localization(audio, visual, events, tolerance=1):
    """How often the frame whose visual embedding is most similar (cosine) to an event's
    audio segment lies within ``tolerance`` frames of the event's first frame.

    Arguments
    ---------
    audio, visual : torch.Tensor
        ``[N, K, dim]`` embeddings of each clip's K segments and K frames.
    events : list
        Per clip, its events ``[(class, first_frame), ...]``.
    tolerance : int
        Frames either side that count as found.

    Returns
    -------
    dict
        ``found`` (fraction of events), ``chance`` (the fraction a uniformly random frame
        would find, averaged over the events) and ``events`` (their number).

    Example
    -------
    >>> v = torch.eye(4).unsqueeze(0)          # frame k's embedding is axis k
    >>> a = torch.eye(4)[[3, 0, 1, 0]].unsqueeze(0)
    >>> event_localization(a, v, [[(0, 0), (1, 2)]])
    {'found': 0.5, 'chance': 0.625, 'events': 2}
    """
    import torch.nn.functional as F

    if len(events) != audio.shape[0]:
        raise ValueError(f"{len(events)} clips of events for {audio.shape[0]} clips of "
                         "embeddings")
    k = visual.shape[1]
    found = chance = n = 0
    for a, v, clip_events in zip(F.normalize(audio.float(), dim=-1),
                                 F.normalize(visual.float(), dim=-1), events):
        for _cls, start in clip_events:
            best = int((v @ a[start]).argmax())
            found += abs(best - start) <= tolerance
            chance += (min(k - 1, start + tolerance) - max(0, start - tolerance) + 1) / k
            n += 1
    if n == 0:
        raise ValueError("no events to localise")
    return {"found": found / n, "chance": chance / n, "events": n}


def learning_check(model, manifest, events_file, batch_size=32, strategy="diagonal_mean"):
    """Event localisation (:func:`event_localization`) and clip-level retrieval of
    ``model`` on the event clips of ``manifest`` (written by
    :func:`~speechbrain_cavmae.data.toy_events.generate_event_clips` with ``events_file``).

    Each frame is paired with its segment of the model's ``audio_length`` fbank frames (a
    plain CAV-MAE model, whose audio is the whole clip, gets the clip for every frame, its
    own pairing). Retrieval ranks clips under ``strategy``
    (:mod:`~speechbrain_cavmae.training.frame_retrieval`).

    Returns
    -------
    dict
        ``found``, ``chance``, ``events``, ``a2v_R@1``, ``v2a_R@1`` (and the other
        retrieval keys).
    """
    import json

    from speechbrain_cavmae.tools.extract_features import segment_embeddings, segments_config
    from speechbrain_cavmae.training.frame_retrieval import frame_retrieval_metrics

    with open(events_file, encoding="utf8") as handle:
        meta = json.load(handle)
    cfg = segments_config(model, {"frame_span_s": meta["clip_length"] * 0.01},
                          n_frames=meta["n_frames"], clip_length=meta["clip_length"])
    was_training = model.training
    model.eval()
    ids, audio, visual = [], [], []
    try:
        for batch_ids, a, v in segment_embeddings(model, manifest, batch_size, config=cfg):
            ids += batch_ids
            audio.append(a)
            visual.append(v)
    finally:
        model.train(was_training)
    audio, visual = torch.cat(audio), torch.cat(visual)
    result = event_localization(audio, visual, [meta["events"][i] for i in ids])
    result.update(frame_retrieval_metrics(audio, visual, strategy))
    return result


__all__ = ["PAIR_POOLING", "check_pair_pooling", "contrastive_objective", "encode_tokens", "event_localization",
           "finetune_pairs_forward", "learning_check", "pair_logits", "pool_pairs",
           "sync_mask_ratio_step"]
