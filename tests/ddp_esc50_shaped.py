"""A small training run shaped like SpeechBrain's ESC-50 recipe, for the 2-process test.

Run under ``torchrun`` (gloo, CPU) by ``tests/test_lobes.py``::

    python -m torch.distributed.run --standalone --nproc_per_node=2 \\
        tests/ddp_esc50_shaped.py OUT_DIR

It loads ``hparams/integration/esc50_cavmae_encoder.yaml`` (a tiny randomly initialised
encoder), lets ``speechbrain.Brain`` wrap the modules in ``DistributedDataParallel`` as it
does for the recipe (``find_unused_parameters`` left at its default, False), and runs the
recipe's ``compute_forward`` path: STFT -> magnitude -> Filterbank -> ``embedding_model``
-> ``classifier``, for one epoch of 3 batches. Each rank trains on its own random clips
and writes ``rank<N>.pt``: the initial and final weights and how its modules were wrapped.

Authors
 * speechbrain-cavmae contributors 2026
"""

import sys
from pathlib import Path

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.processing.features import spectral_magnitude

YAML = Path(__file__).resolve().parents[1] / "hparams" / "integration" / "esc50_cavmae_encoder.yaml"
SR = 16000


class ESC50ShapedBrain(sb.Brain):
    """The recipe's forward (without its data pipeline and metrics)."""

    def compute_forward(self, batch, stage):
        wavs, _ = batch
        wavs = wavs.to(self.device)
        feats = spectral_magnitude(self.modules.compute_stft(wavs),
                                   power=self.hparams.spec_mag_power)
        feats = self.modules.compute_fbank(feats)
        return self.modules.classifier(self.modules.embedding_model(feats))

    def compute_objectives(self, predictions, batch, stage):
        labels = batch[1].to(self.device)
        return torch.nn.functional.cross_entropy(predictions.squeeze(1), labels)


def main(out_dir):
    run_opts = {"distributed_backend": "gloo", "device": "cpu"}
    sb.utils.distributed.ddp_init_group(run_opts)
    rank = torch.distributed.get_rank()
    overrides = {"data_folder": str(out_dir), "output_folder": str(out_dir / "run"),
                 "cavmae_checkpoint": None, "emb_dim": 32, "cavmae_depth": 1,
                 "cavmae_num_heads": 4, "out_n_neurons": 3, "number_of_epochs": 1,
                 "lr": 0.001}
    with open(YAML, encoding="utf8") as handle:
        hparams = load_hyperpyyaml(handle, overrides)
    init = {name: {k: v.clone() for k, v in hparams[name].state_dict().items()}
            for name in ("embedding_model", "classifier")}
    gen = torch.Generator().manual_seed(100 + rank)  # each rank its own clips
    wavs = torch.randn(6, SR // 2, generator=gen)
    labels = torch.arange(6) % 3
    loader = torch.utils.data.DataLoader(list(zip(wavs, labels)), batch_size=2)
    brain = ESC50ShapedBrain(modules=hparams["modules"], opt_class=hparams["opt_class"],
                             hparams=hparams, run_opts=run_opts)
    brain.fit(hparams["epoch_counter"], loader, progressbar=False)
    wrapped = {name: type(module).__name__ for name, module in brain.modules.items()}
    ddp = brain.modules.embedding_model
    final = {name: {k: v.detach().clone() for k, v in getattr(
        brain.modules[name], "module", brain.modules[name]).state_dict().items()}
        for name in ("embedding_model", "classifier")}
    torch.save({"init": init, "final": final, "wrapped": wrapped,
                "find_unused_parameters": getattr(ddp, "find_unused_parameters", None)},
               out_dir / f"rank{rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
