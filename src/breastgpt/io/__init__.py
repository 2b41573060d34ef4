"""breastgpt.io."""
