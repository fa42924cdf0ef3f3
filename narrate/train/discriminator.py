"""A multi-period discriminator (HiFi-GAN's MPD, narrower) for the vocoder's adversarial term.

Each sub-discriminator folds the waveform into rows of ``period`` samples and convolves along
the rows only, so it sees one sample phase of every period at a time: a waveform whose periods
do not repeat (the aperiodic, breathy sound a regression-only vocoder makes where it is unsure
of the phase) looks different from the teacher's to it, whatever its spectrum. Used by
``narrate.train.vocoder`` with least-squares GAN losses and feature matching, as HiFi-GAN trains.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

PERIODS = (2, 3, 5, 7, 11)  # primes: together they cover every period up to their product


class PeriodDiscriminator(nn.Module):
    def __init__(self, period: int, channels: tuple[int, ...] = (16, 32, 64, 128)):
        super().__init__()
        self.period = period
        dims = (1, *channels)
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(a, b, (5, 1), (3, 1), padding=(2, 0))) for a, b in zip(dims[:-1], dims[1:]))
        self.last = weight_norm(nn.Conv2d(channels[-1], channels[-1], (5, 1), 1, padding=(2, 0)))
        self.out = weight_norm(nn.Conv2d(channels[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """wav [B, T] -> (scores [B, n], feature maps of every layer)."""
        B, T = wav.shape
        pad = (-T) % self.period
        x = F.pad(wav, (0, pad), mode="reflect") if pad else wav
        x = x.view(B, 1, -1, self.period)
        maps = []
        for conv in [*self.convs, self.last]:
            x = F.leaky_relu(conv(x), 0.1)
            maps.append(x)
        x = self.out(x)
        maps.append(x)
        return x.flatten(1), maps


class MultiPeriodDiscriminator(nn.Module):
    def __init__(self, periods: tuple[int, ...] = PERIODS):
        super().__init__()
        self.subs = nn.ModuleList(PeriodDiscriminator(p) for p in periods)

    def forward(self, wav: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        return [d(wav) for d in self.subs]


def discriminator_loss(real: list, fake: list) -> torch.Tensor:
    """Least squares: real scores toward 1, fake toward 0, summed over the sub-discriminators."""
    return sum(((1 - r) ** 2).mean() + (f ** 2).mean() for (r, _), (f, _) in zip(real, fake))  # type: ignore[return-value]


def generator_losses(real: list, fake: list) -> tuple[torch.Tensor, torch.Tensor]:
    """(adversarial: fake scores toward 1; feature matching: L1 between the sub-discriminators'
    feature maps of the teacher's waveform and of the student's), each summed over them."""
    adv = sum(((1 - f) ** 2).mean() for f, _ in fake)
    fm = sum(sum((a.detach() - b).abs().mean() for a, b in zip(rm, fm_)) for (_, rm), (_, fm_) in zip(real, fake))
    return adv, fm  # type: ignore[return-value]
