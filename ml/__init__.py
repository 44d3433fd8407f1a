"""Pure training code: torch/transformers, never Django."""
