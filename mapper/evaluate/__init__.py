"""Evaluation harness (torch): the CIM executor, the end-to-end runner, text data and metrics."""
