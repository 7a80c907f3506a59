"""PyTorch peer for `shoal bench cnn`: the same convolutional Q-network, TD update and inference.

CleanRL's Atari QNetwork (dqn_atari.py): Conv(4→32, 8, /4) ReLU, Conv(32→64, 4, /2) ReLU,
Conv(64→64, 3, /1) ReLU, Flatten, Linear(3136→512) ReLU, Linear(512→actions), the input
scaled by 1/255 in forward; or MinAtar's (Conv(4→16, 3) ReLU, Linear(1024→128) ReLU, Linear).
One update: Q of the taken actions, Huber loss against fixed targets, backward, Adam. One CPU
thread, as Shoal's engine. Prints lines shaped like Shoal's (medians of --rounds rounds).
"""

import argparse
import statistics
import time

import torch
from torch import nn


def timed(seconds, fn):
    for _ in range(3):
        fn()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        calls += 1
    return (time.perf_counter() - start) * 1e6 / calls


class QNetwork(nn.Module):
    def __init__(self, preset, actions):
        super().__init__()
        if preset == "nature":
            self.scale = 1.0 / 255.0
            self.network = nn.Sequential(
                nn.Conv2d(4, 32, 8, stride=4), nn.ReLU(),
                nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
                nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
                nn.Flatten(), nn.Linear(3136, 512), nn.ReLU(), nn.Linear(512, actions),
            )
        else:
            self.scale = 1.0
            self.network = nn.Sequential(
                nn.Conv2d(4, 16, 3, stride=1), nn.ReLU(),
                nn.Flatten(), nn.Linear(1024, 128), nn.ReLU(), nn.Linear(128, actions),
            )

    def forward(self, x):
        return self.network(x * self.scale)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="nature")
    parser.add_argument("--actions", type=int, default=6)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    side = 84 if args.preset == "nature" else 10
    q = QNetwork(args.preset, args.actions)
    opt = torch.optim.Adam(q.parameters(), lr=1e-4)
    high = 256 if args.preset == "nature" else 2
    obs = torch.randint(0, high, (max(args.batch, 256), 4, side, side)).float()
    n = args.batch
    actions = torch.randint(0, args.actions, (n,))
    targets = torch.rand(n) * 2 - 1

    def update():
        values = q(obs[:n]).gather(1, actions.view(-1, 1)).squeeze(1)
        loss = nn.functional.smooth_l1_loss(values, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def median_us(fn):
        return statistics.median(timed(args.seconds, fn) for _ in range(args.rounds))

    print(f"torch_version: {torch.__version__}")
    print(f"cnn_update_batch{n}_ms: {median_us(update) / 1e3:.3f}")
    with torch.no_grad():
        for rows in [1, 256]:
            print(f"cnn_inference_batch{rows}_ms: {median_us(lambda: q(obs[:rows])) / 1e3:.3f}")


if __name__ == "__main__":
    main()
