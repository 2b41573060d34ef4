"""breastgpt.train."""
