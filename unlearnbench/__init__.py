"""unlearnbench: a benchmark suite for machine unlearning in language models."""
__version__ = "0.1.0"
# Bump when a change alters what a cached stage would produce (training recipe, statistics), so caches refresh.
CACHE_VERSION = 2
