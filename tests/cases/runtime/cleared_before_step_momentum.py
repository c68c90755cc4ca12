import torch
import torch.nn as nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
for step in range(30):
    loss = nn.functional.mse_loss(model(torch.randn(8, 10)), torch.randn(8, 1))
    loss.backward()
    optimizer.zero_grad()  # clears the gradient before the step: no momentum buffer is created
    optimizer.step()
