"""Correct training idioms that stop or route gradients on purpose: no rule may warn on them.

Each script is a small but complete version of how the idiom is written in practice, and the
whole checker runs on it, so a false alarm from any rule fails the test.
"""

import pytest

from conftest import findings_of

GAN = """
import torch
import torch.nn as nn

generator = nn.Sequential(nn.Linear(100, 256), nn.ReLU(), nn.Linear(256, 784), nn.Tanh())
discriminator = nn.Sequential(nn.Linear(784, 256), nn.LeakyReLU(0.2), nn.Linear(256, 1))
opt_g = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
opt_d = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
criterion = nn.BCEWithLogitsLoss()


def train(loader, epochs=10):
    for epoch in range(epochs):
        for real, _ in loader:
            real = real.view(real.size(0), -1)
            fake = generator(torch.randn(real.size(0), 100))

            opt_d.zero_grad()
            real_logits = discriminator(real)
            fake_logits = discriminator(fake.detach())
            loss_d = criterion(real_logits, torch.ones_like(real_logits)) + criterion(fake_logits, torch.zeros_like(fake_logits))
            loss_d.backward()
            opt_d.step()

            opt_g.zero_grad()
            loss_g = criterion(discriminator(fake), torch.ones_like(real_logits))
            loss_g.backward()
            opt_g.step()
        print(f"epoch {epoch}: d {loss_d.item():.3f} g {loss_g.item():.3f}")
"""

DQN = """
import copy
import random

import torch
import torch.nn as nn
import torch.nn.functional as F


class QNetwork(nn.Module):
    def __init__(self, n_obs, n_actions):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_obs, 128), nn.ReLU(), nn.Linear(128, n_actions))

    def forward(self, x):
        return self.net(x)


policy_net = QNetwork(4, 2)
target_net = copy.deepcopy(policy_net)
target_net.load_state_dict(policy_net.state_dict())
optimizer = torch.optim.AdamW(policy_net.parameters(), lr=1e-4, amsgrad=True)
gamma = 0.99


def optimize(memory, batch_size=128):
    states, actions, rewards, next_states, dones = memory.sample(batch_size)
    q_values = policy_net(states).gather(1, actions.unsqueeze(1)).squeeze(1)
    with torch.no_grad():
        next_q = target_net(next_states).max(1).values
        targets = rewards + gamma * next_q * (1 - dones)
    loss = F.smooth_l1_loss(q_values, targets)
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_value_(policy_net.parameters(), 100)
    optimizer.step()
    return loss.item()


def select_action(state, epsilon):
    if random.random() < epsilon:
        return random.randrange(2)
    with torch.no_grad():
        return policy_net(state).argmax(1).item()


for step in range(10_000):
    optimize(replay_memory)
    if step % 1000 == 0:
        target_net.load_state_dict(policy_net.state_dict())
"""

EMA = """
import copy

import torch
import torch.nn as nn
import torch.nn.functional as F


class EMA:
    def __init__(self, model, decay=0.999):
        self.decay = decay
        self.shadow = copy.deepcopy(model).eval()
        for p in self.shadow.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model):
        for p_ema, p in zip(self.shadow.parameters(), model.parameters()):
            p_ema.mul_(self.decay).add_(p, alpha=1 - self.decay)


model = nn.Sequential(nn.Conv2d(3, 32, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(10))
ema = EMA(model)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

for images, labels in loader:
    loss = F.cross_entropy(model(images), labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        ema.update(model)
"""

FROZEN_BACKBONE = """
import torch
import torch.nn as nn
from torchvision.models import resnet50

model = resnet50(weights="IMAGENET1K_V2")
for param in model.parameters():
    param.requires_grad = False
model.fc = nn.Linear(model.fc.in_features, 5)
optimizer = torch.optim.Adam(model.fc.parameters(), lr=1e-3)
criterion = nn.CrossEntropyLoss()

for epoch in range(5):
    model.train()
    running_loss = 0.0
    for inputs, labels in loader:
        optimizer.zero_grad()
        outputs = model(inputs)
        loss = criterion(outputs, labels)
        loss.backward()
        optimizer.step()
        running_loss += loss.item() * inputs.size(0)
    print(running_loss / len(loader.dataset))
"""

WEIGHT_TYING = """
import math

import torch
import torch.nn as nn


class TiedLanguageModel(nn.Module):
    def __init__(self, vocab_size=10000, d_model=256):
        super().__init__()
        self.encoder = nn.Embedding(vocab_size, d_model)
        self.rnn = nn.LSTM(d_model, d_model, batch_first=True)
        self.decoder = nn.Linear(d_model, vocab_size)
        self.decoder.weight = self.encoder.weight

    def forward(self, tokens):
        hidden, _ = self.rnn(self.encoder(tokens) * math.sqrt(self.encoder.embedding_dim))
        return self.decoder(hidden)


model = TiedLanguageModel()
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
criterion = nn.CrossEntropyLoss()
for tokens, targets in loader:
    logits = model(tokens)
    loss = criterion(logits.view(-1, logits.size(-1)), targets.view(-1))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
"""

DISTILLATION = """
import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models import resnet18, resnet50

teacher = resnet50(weights="IMAGENET1K_V2").eval()
student = resnet18(num_classes=1000)
optimizer = torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
temperature = 4.0
alpha = 0.9

for images, labels in loader:
    with torch.no_grad():
        teacher_logits = teacher(images)
    student_logits = student(images)
    soft_loss = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=1),
        F.softmax(teacher_logits / temperature, dim=1),
        reduction="batchmean",
    ) * temperature**2
    hard_loss = F.cross_entropy(student_logits, labels)
    loss = alpha * soft_loss + (1 - alpha) * hard_loss
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
"""

BYOL = """
import copy

import torch
import torch.nn as nn
import torch.nn.functional as F


def mlp(dim, hidden=4096, out=256):
    return nn.Sequential(nn.Linear(dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, out))


class BYOL(nn.Module):
    def __init__(self, backbone, dim=2048, momentum=0.996):
        super().__init__()
        self.online_encoder = nn.Sequential(backbone, mlp(dim))
        self.predictor = mlp(256, out=256)
        self.target_encoder = copy.deepcopy(self.online_encoder)
        self.target_encoder.requires_grad_(False)
        self.momentum = momentum

    @torch.no_grad()
    def update_target(self):
        for online, target in zip(self.online_encoder.parameters(), self.target_encoder.parameters()):
            target.data.mul_(self.momentum).add_(online.data, alpha=1 - self.momentum)

    def forward(self, view_1, view_2):
        online_1 = self.predictor(self.online_encoder(view_1))
        online_2 = self.predictor(self.online_encoder(view_2))
        with torch.no_grad():
            target_1 = self.target_encoder(view_1)
            target_2 = self.target_encoder(view_2)
        loss = regression_loss(online_1, target_2.detach()) + regression_loss(online_2, target_1.detach())
        return loss.mean()


def regression_loss(x, y):
    return 2 - 2 * F.cosine_similarity(x, y, dim=-1)


class SimSiam(nn.Module):
    def __init__(self, backbone, dim=2048, pred_dim=512):
        super().__init__()
        self.encoder = nn.Sequential(backbone, nn.Linear(dim, dim), nn.BatchNorm1d(dim))
        self.predictor = nn.Sequential(nn.Linear(dim, pred_dim), nn.ReLU(), nn.Linear(pred_dim, dim))

    def forward(self, x1, x2):
        z1 = self.encoder(x1)
        z2 = self.encoder(x2)
        p1 = self.predictor(z1)
        p2 = self.predictor(z2)
        return p1, p2, z1.detach(), z2.detach()
"""

STRAIGHT_THROUGH = """
import torch
import torch.nn as nn


class BinaryLinear(nn.Module):
    def __init__(self, in_features, out_features):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) * 0.01)

    def forward(self, x):
        binary = self.weight + (torch.sign(self.weight) - self.weight).detach()
        return x @ binary.t()


class QuantizedActivation(nn.Module):
    def __init__(self, features):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(features))

    def forward(self, x):
        scaled = x * self.scale
        return scaled + (torch.round(scaled) - scaled).detach()


model = nn.Sequential(BinaryLinear(784, 256), QuantizedActivation(256), BinaryLinear(256, 10))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
for x, y in loader:
    loss = nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
"""

ATTENTION = """
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class SelfAttention(nn.Module):
    def __init__(self, dim, heads=8):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.register_buffer("mask", torch.tril(torch.ones(512, 512)).view(1, 1, 512, 512))

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q = q.view(b, t, self.heads, c // self.heads).transpose(1, 2)
        k = k.view(b, t, self.heads, c // self.heads).transpose(1, 2)
        v = v.view(b, t, self.heads, c // self.heads).transpose(1, 2)
        scores = q @ k.transpose(-2, -1) / math.sqrt(k.size(-1))
        scores = scores.masked_fill(self.mask[:, :, :t, :t] == 0, float("-inf"))
        weights = F.softmax(scores, dim=-1)
        out = (weights @ v).transpose(1, 2).contiguous().view(b, t, c)
        return self.proj(out)


class Classifier(nn.Module):
    def __init__(self, dim=256, classes=10):
        super().__init__()
        self.attention = SelfAttention(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        return self.head(self.attention(x).mean(dim=1))


model = Classifier()
criterion = nn.CrossEntropyLoss()
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
for x, y in loader:
    loss = criterion(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
"""

RUNNING_STATS = """
import torch
import torch.nn as nn


class RunningNorm(nn.Module):
    def __init__(self, features, momentum=0.1, eps=1e-5):
        super().__init__()
        self.momentum = momentum
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(features))
        self.bias = nn.Parameter(torch.zeros(features))
        self.register_buffer("running_mean", torch.zeros(features))
        self.register_buffer("running_var", torch.ones(features))

    def forward(self, x):
        if self.training:
            mean = x.mean(dim=0)
            var = x.var(dim=0, unbiased=False)
            with torch.no_grad():
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * var)
        else:
            mean, var = self.running_mean, self.running_var
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias
"""

VQ_VAE = """
import torch
import torch.nn as nn
import torch.nn.functional as F


class VectorQuantizerEMA(nn.Module):
    def __init__(self, num_codes=512, dim=64, decay=0.99, eps=1e-5):
        super().__init__()
        self.decay = decay
        self.eps = eps
        self.embedding = nn.Embedding(num_codes, dim)
        self.embedding.weight.requires_grad_(False)
        self.register_buffer("cluster_size", torch.zeros(num_codes))
        self.register_buffer("embed_sum", self.embedding.weight.data.clone())

    def forward(self, z):
        flat = z.reshape(-1, z.size(-1))
        with torch.no_grad():
            distances = torch.cdist(flat, self.embedding.weight)
            codes = distances.argmin(dim=1)
        quantized = self.embedding(codes).view_as(z)
        if self.training:
            with torch.no_grad():
                one_hot = F.one_hot(codes, self.embedding.num_embeddings).type(flat.dtype)
                self.cluster_size.mul_(self.decay).add_(one_hot.sum(0), alpha=1 - self.decay)
                self.embed_sum.mul_(self.decay).add_(one_hot.t() @ flat, alpha=1 - self.decay)
                self.embedding.weight.data.copy_(self.embed_sum / (self.cluster_size.unsqueeze(1) + self.eps))
        commitment = F.mse_loss(z, quantized.detach())
        quantized = z + (quantized - z).detach()
        return quantized, commitment


class VQVAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(3, 64, 4, 2, 1), nn.ReLU(), nn.Conv2d(64, 64, 4, 2, 1))
        self.quantizer = VectorQuantizerEMA()
        self.decoder = nn.Sequential(nn.ConvTranspose2d(64, 64, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(64, 3, 4, 2, 1))

    def forward(self, x):
        z = self.encoder(x).permute(0, 2, 3, 1)
        quantized, commitment = self.quantizer(z)
        return self.decoder(quantized.permute(0, 3, 1, 2)), commitment


model = VQVAE()
optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)
for images, _ in loader:
    reconstruction, commitment = model(images)
    loss = F.mse_loss(reconstruction, images) + 0.25 * commitment
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
"""

PHASE_LOOP = """
import copy

import torch
import torch.nn as nn


def train_model(model, dataloaders, criterion, optimizer, num_epochs=25):
    best_model_wts = copy.deepcopy(model.state_dict())
    best_acc = 0.0
    for epoch in range(num_epochs):
        for phase in ["train", "val"]:
            if phase == "train":
                model.train()
            else:
                model.eval()
            running_loss = 0.0
            running_corrects = 0
            for inputs, labels in dataloaders[phase]:
                optimizer.zero_grad()
                with torch.set_grad_enabled(phase == "train"):
                    outputs = model(inputs)
                    _, preds = torch.max(outputs, 1)
                    loss = criterion(outputs, labels)
                    if phase == "train":
                        loss.backward()
                        optimizer.step()
                running_loss += loss.item() * inputs.size(0)
                running_corrects += torch.sum(preds == labels.data)
            epoch_acc = running_corrects.double() / len(dataloaders[phase].dataset)
            if phase == "val" and epoch_acc > best_acc:
                best_acc = epoch_acc
                best_model_wts = copy.deepcopy(model.state_dict())
    model.load_state_dict(best_model_wts)
    return model
"""

REINFORCE = """
import torch
import torch.nn as nn
from torch.distributions import Categorical

policy = nn.Sequential(nn.Linear(4, 128), nn.ReLU(), nn.Linear(128, 2))
optimizer = torch.optim.Adam(policy.parameters(), lr=1e-2)


def finish_episode(rewards, log_probs, gamma=0.99):
    returns = []
    running = 0.0
    for reward in reversed(rewards):
        running = reward + gamma * running
        returns.insert(0, running)
    returns = torch.tensor(returns)
    returns = (returns - returns.mean()) / (returns.std() + 1e-8)
    losses = []
    for log_prob, ret in zip(log_probs, returns):
        losses.append(-log_prob * ret)
    optimizer.zero_grad()
    loss = torch.stack(losses).sum()
    loss.backward()
    optimizer.step()


def run_episode(env):
    state, _ = env.reset()
    log_probs, rewards = [], []
    for t in range(1000):
        probs = torch.softmax(policy(torch.as_tensor(state, dtype=torch.float32)), dim=-1)
        dist = Categorical(probs)
        action = dist.sample()
        log_probs.append(dist.log_prob(action))
        state, reward, done, _, _ = env.step(action.item())
        rewards.append(reward)
        if done:
            break
    finish_episode(rewards, log_probs)
"""

SEQUENCE_LOSS = """
import torch
import torch.nn as nn

rnn = nn.GRU(32, 64, batch_first=True)
head = nn.Linear(64, 32)
criterion = nn.MSELoss()
optimizer = torch.optim.Adam(list(rnn.parameters()) + list(head.parameters()), lr=1e-3)

for batch in loader:
    outputs, _ = rnn(batch[:, :-1])
    loss = 0
    for t in range(outputs.size(1)):
        loss += criterion(head(outputs[:, t]), batch[:, t + 1])
    optimizer.zero_grad()
    (loss / outputs.size(1)).backward()
    optimizer.step()
"""

PSEUDO_LABELS = """
import torch
import torch.nn.functional as F


def fixmatch_step(model, optimizer, labeled, weak, strong, threshold=0.95):
    x, y = labeled
    logits_x = model(x)
    with torch.no_grad():
        probs = torch.softmax(model(weak), dim=1)
        confidence, pseudo = probs.max(dim=1)
        mask = (confidence >= threshold).float()
    logits_strong = model(strong)
    unsupervised = (F.cross_entropy(logits_strong, pseudo, reduction="none") * mask).mean()
    loss = F.cross_entropy(logits_x, y) + unsupervised
    accuracy = (logits_x.argmax(dim=1) == y).float().mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item(), accuracy.item()
"""

MOCO = """
import torch
import torch.nn as nn
import torch.nn.functional as F


class MoCo(nn.Module):
    def __init__(self, base_encoder, dim=128, K=4096, m=0.999, T=0.07):
        super().__init__()
        self.K, self.m, self.T = K, m, T
        self.encoder_q = base_encoder(num_classes=dim)
        self.encoder_k = base_encoder(num_classes=dim)
        for param_q, param_k in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
            param_k.data.copy_(param_q.data)
            param_k.requires_grad = False
        self.register_buffer("queue", F.normalize(torch.randn(dim, K), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    @torch.no_grad()
    def _momentum_update_key_encoder(self):
        for param_q, param_k in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
            param_k.data = param_k.data * self.m + param_q.data * (1.0 - self.m)

    @torch.no_grad()
    def _dequeue_and_enqueue(self, keys):
        ptr = int(self.queue_ptr)
        self.queue[:, ptr : ptr + keys.shape[0]] = keys.T
        self.queue_ptr[0] = (ptr + keys.shape[0]) % self.K

    @torch.no_grad()
    def _keys(self, im_k):
        self._momentum_update_key_encoder()
        return F.normalize(self.encoder_k(im_k), dim=1)

    def _queries(self, im_q):
        return F.normalize(self.encoder_q(im_q), dim=1)

    def forward(self, im_q, im_k):
        q = self._queries(im_q)
        k = self._keys(im_k)
        l_pos = torch.einsum("nc,nc->n", [q, k]).unsqueeze(-1)
        l_neg = torch.einsum("nc,ck->nk", [q, self.queue.clone().detach()])
        logits = torch.cat([l_pos, l_neg], dim=1) / self.T
        labels = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        self._dequeue_and_enqueue(k)
        return logits, labels
"""

TEACHER_HELPER = """
import torch
import torch.nn as nn
import torch.nn.functional as F

student = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
teacher = nn.Sequential(nn.Linear(32, 256), nn.ReLU(), nn.Linear(256, 10))
optimizer = torch.optim.AdamW(student.parameters(), lr=1e-3)


@torch.no_grad()
def soft_targets(model, x, temperature=4.0):
    model.eval()
    return F.softmax(model(x) / temperature, dim=-1)


@torch.inference_mode()
def evaluate(model, loader):
    correct = 0
    for x, y in loader:
        correct += (model(x).argmax(1) == y).sum().item()
    return correct


for epoch in range(10):
    student.train()
    stats = {"loss": 0.0, "kd": 0.0}
    for x, y in loader:
        logits = student(x)
        kd = F.kl_div(F.log_softmax(logits / 4.0, dim=-1), soft_targets(teacher, x), reduction="batchmean")
        loss = F.cross_entropy(logits, y) + 16.0 * kd
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        stats["loss"] += loss.item()
        stats["kd"] += kd.detach()
    print(epoch, stats, evaluate(student, val_loader))
"""

MAML = """
import torch
import torch.nn as nn
import torch.nn.functional as F

model = nn.Sequential(nn.Linear(1, 40), nn.ReLU(), nn.Linear(40, 1))
meta_optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)


def functional_forward(x, params):
    x = F.relu(F.linear(x, params[0], params[1]))
    return F.linear(x, params[2], params[3])


for iteration in range(1000):
    meta_loss = 0.0
    for support_x, support_y, query_x, query_y in sample_tasks(25):
        params = list(model.parameters())
        for _ in range(5):
            inner_loss = F.mse_loss(functional_forward(support_x, params), support_y)
            grads = torch.autograd.grad(inner_loss, params, create_graph=True)
            params = [p - 0.01 * g for p, g in zip(params, grads)]
        meta_loss = meta_loss + F.mse_loss(functional_forward(query_x, params), query_y)
    meta_optimizer.zero_grad()
    meta_loss.backward()
    meta_optimizer.step()
"""

LOSS_DICT = """
import torch
import torch.nn as nn
import torch.nn.functional as F

model = nn.Linear(16, 4)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
clear_gradients = optimizer.zero_grad

for x, targets in loader:
    clear_gradients()
    outputs = model(x)
    losses = {"mse": 0.0, "l1": 0.0}
    for name, weight in [("mse", 1.0), ("l1", 0.1)]:
        if name == "mse":
            losses[name] += weight * F.mse_loss(outputs, targets)
        else:
            losses[name] += weight * F.l1_loss(outputs, targets)
    total = sum(losses.values())
    total.backward()
    optimizer.step()
"""

IDIOMS = {
    "gan_detach": GAN,
    "dqn_target_network": DQN,
    "ema_update": EMA,
    "frozen_backbone": FROZEN_BACKBONE,
    "weight_tying": WEIGHT_TYING,
    "distillation_teacher": DISTILLATION,
    "byol_simsiam_stop_gradient": BYOL,
    "straight_through_estimator": STRAIGHT_THROUGH,
    "attention_softmax": ATTENTION,
    "running_stats_in_forward": RUNNING_STATS,
    "vq_vae_codebook_update": VQ_VAE,
    "set_grad_enabled_phases": PHASE_LOOP,
    "reinforce_log_probs": REINFORCE,
    "sequence_loss_sum": SEQUENCE_LOSS,
    "pseudo_labels_and_accuracy": PSEUDO_LABELS,
    "moco_helpers_under_no_grad": MOCO,
    "teacher_targets_in_no_grad_helper": TEACHER_HELPER,
    "maml_inner_loop": MAML,
    "loss_dict_backpropagated": LOSS_DICT,
}


@pytest.mark.parametrize("name", sorted(IDIOMS))
def test_idiom_gets_no_warning(name):
    findings = findings_of(IDIOMS[name])
    warnings = [f"{f.span.line}: {f.code} {f.message}" for f in findings if f.severity.label in ("warning", "error")]
    assert warnings == []
