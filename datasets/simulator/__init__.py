"""The physics-based radiograph simulator: calcdx's default training and test data.

    from calcdx.datasets.simulator import simulate_dataset
    manifest = simulate_dataset("sim/", n=100, seed=0, workers=2, spacing_mm=0.5)
"""

from calcdx.datasets.simulator.dataset import SimulationConfig, render_case, simulate_dataset

__all__ = ["SimulationConfig", "render_case", "simulate_dataset"]
