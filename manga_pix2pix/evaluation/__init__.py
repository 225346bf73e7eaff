"""Evaluation: metrics, the original's three tasks, and report figures."""
