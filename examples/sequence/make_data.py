"""Write noisy sine waves cut into windows of 24 steps, and the value that follows each window:
waves.npz (x [400, 24, 1] float32, y [400, 1]) to train on, waves_test.npz (100 more) to
evaluate, and new_waves.npy (3 windows) to predict. Sequences are [examples, time, features]."""

from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
STEPS = 24


def waves(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(STEPS + 1) * 0.3
    freq = rng.uniform(0.6, 1.4, (n, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    wave = np.sin(freq * t + phase) + 0.05 * rng.standard_normal((n, STEPS + 1))
    return wave[:, :STEPS, None].astype(np.float32), wave[:, STEPS:].astype(np.float32)


def main() -> None:
    rng = np.random.default_rng(5)
    x, y = waves(rng, 400)
    np.savez(HERE / "waves.npz", x=x, y=y)
    x, y = waves(rng, 100)
    np.savez(HERE / "waves_test.npz", x=x, y=y)
    np.save(HERE / "new_waves.npy", waves(rng, 3)[0])
    print("wrote waves.npz (400 windows), waves_test.npz (100) and new_waves.npy (3)")


if __name__ == "__main__":
    main()
