"""breastgpt.bench."""
