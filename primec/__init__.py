"""primec: compile PyTorch spiking neural networks to memristor in-memory-computing macros."""

__version__ = "0.1.0"
