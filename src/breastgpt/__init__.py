"""BreastGPT: multimodal AI across the breast-cancer care pathway.

Research software, not a medical device: nothing it produces is a clinical finding.

Importing this package makes transformers' Auto classes (``AutoConfig``, ``AutoModel``,
``AutoModelForImageTextToText``, ``AutoProcessor``) load BreastGPT checkpoints, with no ``trust_remote_code``.
The registration needs torch and transformers (seconds to import), so it runs when transformers is imported
(at once if it already is) rather than on every ``import breastgpt``: the CLI's light commands stay fast.
"""

import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

RESEARCH_USE_NOTICE = (
    "BreastGPT is research software, not a medical device. Its outputs are not clinical findings and must not "
    "be used for diagnosis or treatment decisions."
)


def _register_with_transformers() -> None:
    if "breastgpt.model" in sys.modules:
        return  # breastgpt.model is importing (and so importing transformers): it registers when it finishes
    import breastgpt.model  # noqa: F401  (its import registers the classes)


class _RegisterAfterTransformers(importlib.abc.MetaPathFinder):
    """Finds nothing itself: when ``transformers`` is first imported, it lets the normal finder locate it and
    registers BreastGPT's classes right after the package has executed."""

    def find_spec(self, name, path=None, target=None):
        if name != "transformers":
            return None
        sys.meta_path.remove(self)  # once only, and so the lookup below does not come back here
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            run = spec.loader.exec_module

            def exec_then_register(module):
                run(module)
                _register_with_transformers()

            spec.loader.exec_module = exec_then_register
        return spec


if "transformers" in sys.modules:
    _register_with_transformers()
elif not any(isinstance(finder, _RegisterAfterTransformers) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterTransformers())
