"""breastgpt.deid."""
