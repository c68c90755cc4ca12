import torch
import torch.nn as nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
ranking_loss = nn.MarginRankingLoss(margin=0.5)
for step in range(20):
    better, worse = torch.randn(64, 10) + 0.5, torch.randn(64, 10)
    # The loss depends on score differences only, so the last bias gets a gradient of exactly 0.
    loss = ranking_loss(model(better).squeeze(1), model(worse).squeeze(1), torch.ones(64))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
