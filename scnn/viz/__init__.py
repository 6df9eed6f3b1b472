"""Figures and tables: plots from plain data, run and checkpoint figures, markdown tables."""
