"""breastgpt.synth."""
