"""BreastGPT: multimodal AI across the breast-cancer care pathway.

Research software, not a medical device: nothing it produces is a clinical finding.
"""

__version__ = "0.1.0"

RESEARCH_USE_NOTICE = (
    "BreastGPT is research software, not a medical device. Its outputs are not clinical findings and must not "
    "be used for diagnosis or treatment decisions."
)
