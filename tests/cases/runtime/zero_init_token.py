import torch
import torch.nn as nn

torch.manual_seed(0)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.proj = nn.Linear(16, 32)
        self.enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(32, 4, 64, dropout=0.1, batch_first=True), 2)
        self.cls = nn.Parameter(torch.zeros(1, 1, 32))
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        f = self.stem(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(x.size(0), -1, -1), self.proj(f)], dim=1)
        return self.head(self.enc(tokens)[:, 0])


model = Net()
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.05)
for step in range(10):
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 10, (8,))
    optimizer.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
