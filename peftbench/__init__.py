"""peftbench: measure, predict and recommend parameter-efficient fine-tuning methods."""

__version__ = "0.1.0"
