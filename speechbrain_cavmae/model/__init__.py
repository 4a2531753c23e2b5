"""CAV-MAE as plain ``torch.nn`` modules: no SpeechBrain, no file I/O.

Modules
-------
attention    : multi-head self-attention with a choice of kernel.
block        : the ViT block (timm) and the shared block with per-stream LayerNorms.
patch_embed  : audio (fbank) and image patch embeddings.
pos_embed    : 2-D sin-cos positional embeddings and their resizing.
patchify     : inputs to per-patch reconstruction targets and back.
masking      : random and structured (time / frequency) token masking.
modes        : the five fine-tuning / inference modes (the one mode table).
tasks        : pretraining, multi-label and single-label classification (the one task
               table: loss, score activation, main metric, metric set).
encoder      : :class:`CAVMAEEncoder`, the only place the audio and visual streams meet, and
               its audio-only / visual-only / joint halves built by the same code.
decoder      : :class:`CAVMAEDecoder`, the joint reconstruction decoder.
cavmae       : :class:`CAVMAE`, the pretraining model (encoder + decoder).
classifier   : :class:`CAVMAEClassifier`, the fine-tuned model.
"""
