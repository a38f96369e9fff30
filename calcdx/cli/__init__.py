"""The calcdx command-line interface."""
