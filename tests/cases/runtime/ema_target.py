import copy

import torch
import torch.nn as nn

torch.manual_seed(0)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.online = nn.Linear(8, 8)
        self.target = copy.deepcopy(self.online).requires_grad_(False)

    def forward(self, x1, x2):
        return (self.online(x1) - self.target(x2)).pow(2).mean()


model = Net()
optimizer = torch.optim.Adam(model.online.parameters(), lr=1e-3)
for step in range(20):
    x = torch.randn(16, 8)
    optimizer.zero_grad()
    model(x, x + 0.1 * torch.randn_like(x)).backward()
    optimizer.step()
    with torch.no_grad():  # EMA update of the target network, outside the optimizer
        for target, online in zip(model.target.parameters(), model.online.parameters()):
            target.lerp_(online, 0.01)
