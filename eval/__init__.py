"""Evaluation: the four answer paths side by side, retrieval quality, and benchmarks."""
