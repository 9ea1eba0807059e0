"""Vendor knowledge as data, one module per vendor."""
