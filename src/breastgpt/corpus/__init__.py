"""breastgpt.corpus."""
