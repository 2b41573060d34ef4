"""Functions of the local lmms-eval task `breastgpt_local` (tests/interop/test_lmms_eval.py), loaded by lmms-eval
itself from the task folder: each document names its image files, a question and the expected answer."""

from PIL import Image


def doc_to_visual(doc):
    return [Image.open(path).convert("RGB") for path in doc["images"]]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["question"]


def process_results(doc, results):
    return {"exact_match": float(results[0].strip() == doc["answer"])}
