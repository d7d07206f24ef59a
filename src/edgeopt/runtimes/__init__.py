"""Runtimes behind one small interface (see base.py). A new runtime is one file."""
