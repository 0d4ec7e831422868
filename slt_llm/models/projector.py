"""Projector: visual tokens (B,T',in_dim) -> LLM input embeddings (B,T',out_dim).

"mlp": ``num_layers`` Linear layers with GELU between (LLaVA's mlp2x_gelu for
num_layers=2), hidden width ``cfg.hidden`` (default: out_dim);
"linear": one Linear. Cost: in_dim*hidden + (num_layers-2)*hidden^2 +
hidden*out_dim multiply-adds per token.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from slt_llm.config import ProjectorConfig
from slt_llm.errors import ConfigError


class Projector(nn.Module):
    def __init__(self, cfg: ProjectorConfig, in_dim: int, out_dim: int):
        super().__init__()
        self.cfg = cfg
        self.in_dim, self.out_dim = int(in_dim), int(out_dim)
        if cfg.type == "linear":
            self.net = nn.Sequential(nn.Linear(in_dim, out_dim))
        elif cfg.type == "mlp":
            if cfg.num_layers < 1:
                raise ConfigError(f"projector.num_layers must be >= 1, got {cfg.num_layers}")
            hidden = int(cfg.hidden or out_dim)
            dims = [in_dim] + [hidden] * (cfg.num_layers - 1) + [out_dim]
            layers: list[nn.Module] = []
            for i in range(cfg.num_layers):
                layers.append(nn.Linear(dims[i], dims[i + 1]))
                if i < cfg.num_layers - 1:
                    layers.append(nn.GELU())
            self.net = nn.Sequential(*layers)
        else:
            raise ConfigError(f"projector.type: unknown {cfg.type!r} (choose mlp or linear)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
