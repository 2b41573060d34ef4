"""breastgpt.corpus.sources."""
