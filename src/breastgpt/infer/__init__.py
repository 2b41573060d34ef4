"""breastgpt.infer."""
