"""TOFU-style and (later) WMDP-style tasks: synthetic generators, loaders of real data."""
