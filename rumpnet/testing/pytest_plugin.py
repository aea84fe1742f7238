"""pytest plugin: fixtures for kernels and wires (filled in below)."""
