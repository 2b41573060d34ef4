"""One patient's care pathway: a case folder (`case.json` + media), `breastgpt case run` walking its stages in order
with the model, and the case report (JSON + HTML). See docs/pathway.md."""

from breastgpt.case.schema import Case, CaseError, CaseMedia, CaseStudy, load_case, write_case

__all__ = ["Case", "CaseError", "CaseMedia", "CaseStudy", "load_case", "write_case"]
