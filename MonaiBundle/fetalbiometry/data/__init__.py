"""Data sets: the HC18 challenge data and synthetic phantoms."""
