"""The full-size model (ViT-B, 1024 frames, 224 px) builds and takes one training step."""

import pytest
import torch

from speechbrain_cavmae import CAVMAE, CAVMAEClassifier, ContrastiveLoss, MaskedReconstructionLoss


@pytest.mark.slow
def test_full_size_pretraining_step():
    torch.manual_seed(0)
    model = CAVMAE()
    n_params = sum(p.numel() for p in model.parameters())
    assert 185e6 < n_params < 195e6  # two ViT-B branches, a shared block, 8-block decoder
    audio, image = torch.randn(2, 1024, 128), torch.randn(2, 3, 224, 224)
    out = model(audio, image)
    assert out["pred_a"].shape == (2, 512, 256) and out["pred_v"].shape == (2, 196, 768)
    assert out["mask_a"].sum().item() == 2 * 384 and out["mask_v"].sum().item() == 2 * 147
    rec = MaskedReconstructionLoss()
    loss = (rec(out["pred_a"], out["target_a"], out["mask_a"])
            + rec(out["pred_v"], out["target_v"], out["mask_v"])
            + 0.01 * ContrastiveLoss()(out["rep_a"], out["rep_v"]))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    before = model.encoder.blocks_u[0].attn.qkv.weight.detach().clone()
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert not torch.equal(before, model.encoder.blocks_u[0].attn.qkv.weight)


def test_full_size_classifier_builds():
    model = CAVMAEClassifier(527)
    assert model.encoder.pos_embed_a.shape == (1, 512, 768)
    assert model.encoder.pos_embed_v.shape == (1, 196, 768)
