"""PyTorch peer for `shoal bench nn`: the same actor-critic, PPO minibatch update and inference.

Actor obs→hidden→actions and critic obs→hidden→1 (hidden 64,64 by default) with orthogonal
init; one update is CleanRL's PPO loss (clipped surrogate, clipped value loss, entropy bonus),
backward, clip_grad_norm_(0.5) and Adam(eps=1e-5). `--threads` torch threads (1 by default),
to set beside Shoal's `--threads`. Prints lines shaped like Shoal's.
"""

import argparse
import time

import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical


def timed(seconds, fn):
    for _ in range(20):
        fn()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(10):
            fn()
        calls += 10
    return (time.perf_counter() - start) * 1e6 / calls


def mlp(sizes, activation, out_gain):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = nn.Linear(a, b)
        last = i == len(sizes) - 2
        nn.init.orthogonal_(linear.weight, out_gain if last else np.sqrt(2))
        nn.init.constant_(linear.bias, 0.0)
        layers.append(linear)
        if not last:
            layers.append(activation())
    return nn.Sequential(*layers)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--activation", default="tanh")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--hidden", default="64,64")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    act = nn.Tanh if args.activation == "tanh" else nn.ReLU
    obs_dim, n_actions, n = 4, 2, args.batch
    hidden = [int(w) for w in args.hidden.split(",")]
    actor = mlp([obs_dim, *hidden, n_actions], act, 0.01)
    critic = mlp([obs_dim, *hidden, 1], act, 1.0)
    params = list(actor.parameters()) + list(critic.parameters())
    opt = torch.optim.Adam(params, lr=2.5e-4, eps=1e-5)
    obs = torch.rand(n, obs_dim) * 2 - 1
    actions = torch.randint(0, n_actions, (n,))
    old_logp = -np.log(n_actions) + (torch.rand(n) * 0.2 - 0.1)
    adv = torch.rand(n) * 2 - 1
    returns = torch.rand(n) * 10
    old_values = torch.rand(n) * 10
    clip, ent_coef, vf_coef = 0.2, 0.01, 0.5

    def update():
        dist = Categorical(logits=actor(obs))
        logp = dist.log_prob(actions)
        ratio = (logp - old_logp).exp()
        pg = torch.max(-adv * ratio, -adv * torch.clamp(ratio, 1 - clip, 1 + clip)).mean()
        v = critic(obs).view(-1)
        v_clipped = old_values + torch.clamp(v - old_values, -clip, clip)
        v_loss = 0.5 * torch.max((v - returns) ** 2, (v_clipped - returns) ** 2).mean()
        loss = pg - ent_coef * dist.entropy().mean() + vf_coef * v_loss
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(params, 0.5)
        opt.step()

    print(f"torch_version: {torch.__version__}")
    print(f"ppo_update_batch{n}_us: {timed(args.seconds, update):.1f}")
    with torch.no_grad():
        for rows in [1, 16, 64, 256]:
            x = obs[:rows]
            us = timed(args.seconds / 2, lambda: (actor(x), critic(x)))
            print(f"inference_batch{rows}_us: {us:.2f}")


if __name__ == "__main__":
    main()
