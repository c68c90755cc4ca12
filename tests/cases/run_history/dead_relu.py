"""A regressor whose hidden layer starts with a bias of -10: every ReLU unit outputs 0 (GS911)."""

import torch
import torch.nn as nn


class Regressor(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(10, 32)
        self.act = nn.ReLU()
        self.out = nn.Linear(32, 1)

    def forward(self, x):
        return self.out(self.act(self.hidden(x)))


torch.manual_seed(0)
model = Regressor()
with torch.no_grad():
    model.hidden.bias.fill_(-10.0)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
for step in range(20):
    x, y = torch.randn(16, 10), torch.randn(16, 1)
    loss = nn.functional.mse_loss(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
