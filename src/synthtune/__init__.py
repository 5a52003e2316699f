"""synthtune: teach an LLM a narrow skill from synthetic data, reproducibly."""

__version__ = "0.1.0"
