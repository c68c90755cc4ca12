"""A metric-learning loss under AMP whose gradient is NaN on every step, so the GradScaler
skips every optimizer step (GS912): the distance of each embedding to itself is sqrt(0), whose
derivative is infinite."""

import torch
import torch.nn as nn

torch.manual_seed(0)
encoder = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))
optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-3)
scaler = torch.amp.GradScaler("cpu")
for step in range(100):
    x = torch.randn(32, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        embeddings = encoder(x).float()
    distances = ((embeddings[:, None] - embeddings[None]) ** 2).sum(-1).sqrt()
    loss = torch.relu(1.0 - distances).mean()
    optimizer.zero_grad()
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
