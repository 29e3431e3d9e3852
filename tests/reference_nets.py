"""Independent re-writings of reference structures, for tests that must not share code with what they check."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from clbench.nets.networks import ConvNet


class ReferenceStyleConvNet(nn.Module):
    """The reference DDM code's structure, written independently: each block stores its GroupNorm output in a
    list, then applies an IN-PLACE ReLU to that same tensor; the list is read after the forward pass, so what
    it holds is relu(norm(conv(x)))."""

    def __init__(self, net: ConvNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        stored = []
        for conv, norm in zip(self.net.convs, self.net.norms):
            x = norm(conv(x))
            stored.append(x)
            x = nn.ReLU(inplace=True)(x)  # modifies the stored tensor too
            x = F.avg_pool2d(x, 2)
        return x.flatten(1), stored
