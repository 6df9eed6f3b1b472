"""Interoperability: NIR graphs (nir.py) and NeuroBench."""
