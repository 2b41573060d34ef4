"""breastgpt.serve."""
