"""snnc: compile trained spiking neural networks for neuromorphic targets and prove spike equivalence."""

__version__ = "0.1.0"
