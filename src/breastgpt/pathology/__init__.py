"""breastgpt.pathology."""
