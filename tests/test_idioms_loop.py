"""Correct training loops in the forms real scripts use: no rule may report a warning or worse on them."""

import pytest

from conftest import findings_of
from gradsight.findings import Severity

PLAIN_LOOP = """
import torch
import torch.nn as nn

model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 2))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
criterion = nn.CrossEntropyLoss()
loader = [(torch.randn(32, 20), torch.randint(0, 2, (32,))) for _ in range(10)]

for epoch in range(5):
    model.train()
    for inputs, targets in loader:
        optimizer.zero_grad()
        loss = criterion(model(inputs), targets)
        loss.backward()
        optimizer.step()
"""

ZERO_AFTER_STEP_WHILE_LOOP = """
import torch
import torch.nn as nn

model = nn.Linear(10, 1)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
step = 0
while step < 1000:
    x = torch.randn(16, 10)
    loss = (model(x) - 1).pow(2).mean()
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    step += 1
"""

ACCUMULATION_MODULO = """
import torch
import torch.nn.functional as F

def train(model, loader, optimizer, accumulation_steps=4):
    model.train()
    optimizer.zero_grad()
    for i, (x, y) in enumerate(loader):
        loss = F.cross_entropy(model(x), y) / accumulation_steps
        loss.backward()
        if (i + 1) % accumulation_steps == 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
"""

ACCUMULATION_EARLY_CONTINUE = """
import torch

def train(model, loader, optimizer, accumulate=8):
    for i, (x, y) in enumerate(loader):
        loss = torch.nn.functional.mse_loss(model(x), y) / accumulate
        loss.backward()
        if (i + 1) % accumulate != 0:
            continue
        optimizer.step()
        optimizer.zero_grad()
"""

ACCUMULATION_MICRO_STEPS = """
import torch
import torch.nn.functional as F

def train(model, batches, optimizer, micro_batch=4):
    for batch_x, batch_y in batches:
        optimizer.zero_grad(set_to_none=True)
        for x, y in zip(batch_x.split(micro_batch), batch_y.split(micro_batch)):
            loss = F.cross_entropy(model(x), y) * x.size(0) / batch_x.size(0)
            loss.backward()
        optimizer.step()
"""

AMP_DONE_RIGHT = """
import torch
import torch.nn as nn

model = nn.Linear(128, 10).cuda()
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.05)
scaler = torch.amp.GradScaler("cuda")
scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=1000)

for step in range(1000):
    x = torch.randn(64, 128, device="cuda")
    y = torch.randint(0, 10, (64,), device="cuda")
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.float16):
        loss = nn.functional.cross_entropy(model(x), y)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
"""

AMP_DISABLED_SCALER = """
import torch
import torch.nn as nn

use_amp = False
model = nn.Linear(8, 1)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
scaler = torch.cuda.amp.GradScaler(enabled=use_amp)

for x, y in [(torch.randn(4, 8), torch.randn(4, 1))] * 10:
    optimizer.zero_grad()
    with torch.autocast("cpu", enabled=use_amp):
        loss = nn.functional.mse_loss(model(x), y)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
"""

AMP_OPTIONAL_BRANCHES = """
import torch

def train_step(model, batch, optimizer, scaler, use_amp):
    x, y = batch
    optimizer.zero_grad()
    if use_amp:
        with torch.autocast("cuda"):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return loss.item()

def fit(model, loader, optimizer, scaler, epochs, use_amp=True):
    for epoch in range(epochs):
        model.train()
        for batch in loader:
            train_step(model, batch, optimizer, scaler, use_amp)
"""

ACCELERATE = """
import torch
from accelerate import Accelerator

accelerator = Accelerator(gradient_accumulation_steps=4)
model = torch.nn.Linear(16, 4)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=0.1, total_iters=100)
loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(64, 16), torch.randint(0, 4, (64,))))
model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)

for epoch in range(3):
    model.train()
    for x, y in loader:
        with accelerator.accumulate(model):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
"""

LIGHTNING = """
import torch
import lightning as L

class Classifier(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(32, 10)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", torch.nn.functional.cross_entropy(self.net(x), y))

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=1e-3)
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.1)
        return [optimizer], [scheduler]

trainer = L.Trainer(max_epochs=5, gradient_clip_val=0.5)
"""

LIGHTNING_MANUAL = """
import torch
import lightning as L

class GAN(L.LightningModule):
    def __init__(self, generator, discriminator):
        super().__init__()
        self.automatic_optimization = False
        self.generator = generator
        self.discriminator = discriminator

    def training_step(self, batch, batch_idx):
        opt_g, opt_d = self.optimizers()
        real = batch
        fake = self.generator(torch.randn(real.size(0), 64))

        opt_d.zero_grad()
        d_loss = -self.discriminator(real).mean() + self.discriminator(fake.detach()).mean()
        self.manual_backward(d_loss)
        opt_d.step()

        opt_g.zero_grad()
        g_loss = -self.discriminator(fake).mean()
        self.manual_backward(g_loss)
        opt_g.step()

    def configure_optimizers(self):
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=2e-4, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
        return opt_g, opt_d
"""

FABRIC = """
import torch
from lightning.fabric import Fabric

fabric = Fabric(accelerator="cuda", precision="16-mixed")
fabric.launch()
model = torch.nn.Linear(32, 2)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
model, optimizer = fabric.setup(model, optimizer)
loader = fabric.setup_dataloaders(torch.utils.data.DataLoader(range(10)))

for epoch in range(10):
    for batch in loader:
        optimizer.zero_grad()
        loss = model(batch).sum()
        fabric.backward(loss)
        fabric.clip_gradients(model, optimizer, max_norm=2.0)
        optimizer.step()
"""

DDP_FSDP = """
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

def main(rank, use_fsdp):
    dist.init_process_group("nccl")
    model = torch.nn.Linear(64, 64).to(rank)
    model = FSDP(model) if use_fsdp else DDP(model, device_ids=[rank])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sampler = torch.utils.data.distributed.DistributedSampler(range(100))
    for epoch in range(10):
        sampler.set_epoch(epoch)
        for x in range(100):
            optimizer.zero_grad()
            loss = model(torch.randn(8, 64, device=rank)).pow(2).mean()
            loss.backward()
            optimizer.step()
    dist.destroy_process_group()
"""

LBFGS_CLOSURE = """
import torch

model = torch.nn.Linear(3, 1)
optimizer = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=20)
x, y = torch.randn(100, 3), torch.randn(100, 1)

for step in range(10):
    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss
    optimizer.step(closure)
"""

LBFGS_LAMBDA_CLOSURE = """
import torch

params = [torch.zeros(3, requires_grad=True)]
optimizer = torch.optim.LBFGS(params)

def loss_fn():
    optimizer.zero_grad()
    loss = (params[0] - 1).pow(2).sum()
    loss.backward()
    return loss

for _ in range(5):
    optimizer.step(lambda: loss_fn())
"""

MANUAL_SGD = """
import torch

w = torch.randn(10, 1, requires_grad=True)
b = torch.zeros(1, requires_grad=True)
lr = 0.1
for epoch in range(100):
    x = torch.randn(32, 10)
    loss = ((x @ w + b) - 1).pow(2).mean()
    loss.backward()
    with torch.no_grad():
        for p in (w, b):
            p -= lr * p.grad
            p.grad.zero_()
"""

MANUAL_SGD_DATA = """
import torch

model = torch.nn.Linear(4, 1)
for step in range(50):
    loss = model(torch.randn(8, 4)).pow(2).mean()
    model.zero_grad()
    loss.backward()
    for p in model.parameters():
        p.data.add_(p.grad.data, alpha=-0.01)
"""

LR_PER_STEP_PARAM_GROUPS = """
import math
import torch

model = torch.nn.Linear(10, 10)
optimizer = torch.optim.AdamW(model.parameters(), lr=0.0)
warmup, total = 100, 1000
for step in range(total):
    lr = 3e-4 * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / total))
    for group in optimizer.param_groups:
        group["lr"] = lr
    loss = model(torch.randn(4, 10)).pow(2).mean()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
"""

SCHEDULER_PER_EPOCH = """
import torch

def train_one_epoch(model, loader, optimizer, criterion):
    model.train()
    for x, y in loader:
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()

def evaluate(model, loader):
    model.eval()
    with torch.no_grad():
        return sum((model(x).argmax(1) == y).sum().item() for x, y in loader)

model = torch.nn.Linear(8, 3)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=30, gamma=0.1)
warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: (epoch + 1) / 5)
criterion = torch.nn.CrossEntropyLoss()
loader = []
for epoch in range(90):
    train_one_epoch(model, loader, optimizer, criterion)
    accuracy = evaluate(model, loader)
    scheduler.step()
    warmup.step()
"""

WARMUP_LAMBDA_PER_BATCH = """
import torch

model = torch.nn.Linear(8, 3)
optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4)
warmup_steps = 500
scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, step / warmup_steps))
for epoch in range(3):
    for x in range(100):
        loss = model(torch.randn(2, 8)).sum()
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
"""

PLATEAU_SCHEDULER = """
import torch

model = torch.nn.Linear(8, 1)
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=3)
val_loss = 0.0
for epoch in range(20):
    scheduler.step(val_loss)
    for x in range(10):
        optimizer.zero_grad()
        loss = model(torch.randn(4, 8)).pow(2).mean()
        loss.backward()
        optimizer.step()
    val_loss = loss.item()
"""

PHASE_LOOP = """
import torch

def train_model(model, dataloaders, criterion, optimizer, scheduler, num_epochs=25):
    for epoch in range(num_epochs):
        for phase in ["train", "val"]:
            if phase == "train":
                model.train()
            else:
                model.eval()
            running_loss = 0.0
            for inputs, labels in dataloaders[phase]:
                optimizer.zero_grad()
                with torch.set_grad_enabled(phase == "train"):
                    outputs = model(inputs)
                    loss = criterion(outputs, labels)
                    if phase == "train":
                        loss.backward()
                        optimizer.step()
                running_loss += loss.item() * inputs.size(0)
            if phase == "train":
                scheduler.step()
    return model
"""

EVAL_THEN_TRAIN_IN_HELPER = """
import torch

def validate(net, loader):
    net.eval()
    with torch.no_grad():
        total = sum(net(x).sum().item() for x in loader)
    net.train()
    return total

model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.1))
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
for epoch in range(10):
    for x in range(100):
        optimizer.zero_grad()
        model(torch.randn(2, 4)).sum().backward()
        optimizer.step()
    validate(model, [])
"""

TEACHER_EVAL = """
import torch

student = torch.nn.Linear(16, 10)
teacher = torch.nn.Linear(16, 10)
optimizer = torch.optim.SGD(student.parameters(), lr=0.05)
for epoch in range(10):
    teacher.eval()
    for x in range(100):
        inputs = torch.randn(8, 16)
        with torch.no_grad():
            soft = teacher(inputs).softmax(-1)
        loss = torch.nn.functional.kl_div(student(inputs).log_softmax(-1), soft, reduction="batchmean")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
"""

GAN_MODEL_ZERO_GRAD = """
import torch
import torch.nn as nn

netG = nn.Sequential(nn.Linear(100, 784), nn.Tanh())
netD = nn.Sequential(nn.Linear(784, 1), nn.Sigmoid())
optimizerD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
optimizerG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
criterion = nn.BCELoss()

for epoch in range(5):
    for real in [torch.randn(64, 784)] * 10:
        netD.zero_grad()
        output = netD(real).view(-1)
        errD_real = criterion(output, torch.ones_like(output))
        errD_real.backward()
        fake = netG(torch.randn(64, 100))
        output = netD(fake.detach()).view(-1)
        errD_fake = criterion(output, torch.zeros_like(output))
        errD_fake.backward()
        optimizerD.step()

        netG.zero_grad()
        output = netD(fake).view(-1)
        errG = criterion(output, torch.ones_like(output))
        errG.backward()
        optimizerG.step()
"""

CROSS_VALIDATION = """
import torch

def make_model():
    return torch.nn.Linear(10, 2)

for fold in range(5):
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(10):
        for x in range(10):
            optimizer.zero_grad()
            model(torch.randn(4, 10)).sum().backward()
            optimizer.step()

for lr in [1e-2, 1e-3]:
    net = torch.nn.Linear(10, 2)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    for step in range(100):
        opt.zero_grad()
        net(torch.randn(4, 10)).sum().backward()
        opt.step()
"""

RESUME_CHECKPOINT = """
import copy
import torch

model = torch.nn.Linear(10, 2)
model = model.to("cuda")
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
checkpoint = torch.load("checkpoint.pt")
model.load_state_dict(checkpoint["model"])
optimizer.load_state_dict(checkpoint["optimizer"])
model = torch.compile(model)
best = copy.deepcopy(model.state_dict())
for step in range(100):
    optimizer.zero_grad()
    model(torch.randn(4, 10)).sum().backward()
    optimizer.step()
"""

REUSED_PARAMETER_LIST = """
import torch

model = torch.nn.Linear(10, 2)
params = list(model.parameters())
print("parameters:", sum(p.numel() for p in params))
optimizer = torch.optim.SGD(params, lr=0.1)
decay, no_decay = [], []
for name, p in model.named_parameters():
    (no_decay if name.endswith("bias") else decay).append(p)
adamw = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}], lr=3e-4)
"""

ADVERSARIAL_INPUT_GRADIENTS = """
import torch

model = torch.nn.Linear(10, 2)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for x, y in [(torch.randn(4, 10), torch.tensor([0, 1, 0, 1]))]:
    x.requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    saliency = x.grad.abs()
"""

TRAIN_STEP_HELPER = """
import torch

class Trainer:
    def __init__(self, model, lr):
        self.model = model
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
        self.scaler = torch.amp.GradScaler()

    def train_step(self, batch):
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda"):
            loss = self.model(batch).mean()
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.item()

    def fit(self, loader, epochs):
        for epoch in range(epochs):
            self.model.train()
            for batch in loader:
                self.train_step(batch)
            self.evaluate(loader)

    def evaluate(self, loader):
        self.model.eval()
        with torch.no_grad():
            for batch in loader:
                self.model(batch)
"""

TRY_AND_WITH_BLOCKS = """
import torch

model = torch.nn.Linear(4, 4)
optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-3, momentum=0.9, alpha=0.99)
for step in range(100):
    try:
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(torch.randn(2, 4)).sum()
        loss.backward()
    except RuntimeError as error:
        print("skipping batch:", error)
        continue
    finally:
        pass
    optimizer.step()
"""

RL_ENV_STEP = """
import torch

policy = torch.nn.Linear(4, 2)
optimizer = torch.optim.Adam(policy.parameters(), lr=1e-2)
for episode in range(100):
    obs = env.reset()
    log_probs, rewards = [], []
    done = False
    while not done:
        dist = torch.distributions.Categorical(logits=policy(torch.as_tensor(obs)))
        action = dist.sample()
        obs, reward, done, info = env.step(action.item())
        log_probs.append(dist.log_prob(action))
        rewards.append(reward)
    loss = -(torch.stack(log_probs) * sum(rewards)).sum()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
"""

SAM_TWO_STEPS = """
import torch
from sam import SAM

model = torch.nn.Linear(10, 2)
optimizer = SAM(model.parameters(), torch.optim.SGD, lr=0.1, momentum=0.9)
for x, y in [(torch.randn(4, 10), torch.tensor([0, 1, 0, 1]))] * 10:
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimizer.first_step(zero_grad=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimizer.second_step(zero_grad=True)
"""

WGAN_CRITIC = """
import torch

generator = torch.nn.Linear(16, 32)
critic = torch.nn.Linear(32, 1)
optimizer_G = torch.optim.RMSprop(generator.parameters(), lr=5e-5)
optimizer_D = torch.optim.RMSprop(critic.parameters(), lr=5e-5)
n_critic, clip_value = 5, 0.01
for epoch in range(100):
    for i, real in enumerate([torch.randn(8, 32)] * 50):
        optimizer_D.zero_grad()
        fake = generator(torch.randn(8, 16)).detach()
        loss_D = -critic(real).mean() + critic(fake).mean()
        loss_D.backward()
        optimizer_D.step()
        for p in critic.parameters():
            p.data.clamp_(-clip_value, clip_value)
        if i % n_critic == 0:
            optimizer_G.zero_grad()
            loss_G = -critic(generator(torch.randn(8, 16))).mean()
            loss_G.backward()
            optimizer_G.step()
"""

APEX_AND_MAML = """
import torch
from apex import amp

def train_apex(model, loader, optimizer):
    for x in loader:
        optimizer.zero_grad()
        loss = model(x).sum()
        with amp.scale_loss(loss, optimizer) as scaled_loss:
            scaled_loss.backward()
        optimizer.step()

def train_maml(model, tasks, meta_optimizer, inner_lr=0.01):
    for task in tasks:
        meta_optimizer.zero_grad()
        loss = model(task).sum()
        grads = torch.autograd.grad(loss, tuple(model.parameters()), create_graph=True)
        fast = [p - inner_lr * g for p, g in zip(model.parameters(), grads)]
        meta_loss = sum(f.sum() for f in fast)
        meta_loss.backward()
        meta_optimizer.step()
"""

IDIOMS = {
    "sam two-step optimizer": SAM_TWO_STEPS,
    "wgan critic loop": WGAN_CRITIC,
    "apex and maml": APEX_AND_MAML,
    "plain loop": PLAIN_LOOP,
    "zero after step in a while loop": ZERO_AFTER_STEP_WHILE_LOOP,
    "accumulation with modulo": ACCUMULATION_MODULO,
    "accumulation with early continue": ACCUMULATION_EARLY_CONTINUE,
    "accumulation over micro-batches": ACCUMULATION_MICRO_STEPS,
    "amp with GradScaler": AMP_DONE_RIGHT,
    "amp with a disabled GradScaler": AMP_DISABLED_SCALER,
    "amp in one branch only": AMP_OPTIONAL_BRANCHES,
    "accelerate": ACCELERATE,
    "lightning automatic optimization": LIGHTNING,
    "lightning manual optimization": LIGHTNING_MANUAL,
    "fabric": FABRIC,
    "ddp and fsdp": DDP_FSDP,
    "lbfgs closure": LBFGS_CLOSURE,
    "lbfgs lambda closure": LBFGS_LAMBDA_CLOSURE,
    "hand-written sgd under no_grad": MANUAL_SGD,
    "hand-written sgd on p.data": MANUAL_SGD_DATA,
    "lr set per step in param_groups": LR_PER_STEP_PARAM_GROUPS,
    "scheduler stepped per epoch": SCHEDULER_PER_EPOCH,
    "warmup lambda stepped per batch": WARMUP_LAMBDA_PER_BATCH,
    "plateau scheduler": PLATEAU_SCHEDULER,
    "set_grad_enabled phase loop": PHASE_LOOP,
    "eval then train in helper": EVAL_THEN_TRAIN_IN_HELPER,
    "teacher kept in eval mode": TEACHER_EVAL,
    "dcgan with model zero_grad": GAN_MODEL_ZERO_GRAD,
    "cross-validation and sweeps": CROSS_VALIDATION,
    "resume from checkpoint": RESUME_CHECKPOINT,
    "reused parameter list": REUSED_PARAMETER_LIST,
    "input gradients only": ADVERSARIAL_INPUT_GRADIENTS,
    "trainer class with train_step": TRAIN_STEP_HELPER,
    "try and with blocks": TRY_AND_WITH_BLOCKS,
    "rl environment step": RL_ENV_STEP,
}


@pytest.mark.parametrize("name", sorted(IDIOMS))
def test_idiom_gets_no_warning(name):
    findings = findings_of(IDIOMS[name])
    warnings = [(f.code, f.span.line, f.message) for f in findings if f.severity >= Severity.WARNING]
    assert warnings == []


@pytest.mark.parametrize("name", sorted(IDIOMS))
def test_idiom_gets_no_loop_information(name):
    findings = findings_of(IDIOMS[name])
    assert [(f.code, f.span.line) for f in findings if f.code.startswith(("GS4", "GS6", "GS1"))] == []
