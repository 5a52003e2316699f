"""Evaluation: the fine-tuned and the base model answer every evaluation set (from the list in
``evaluation.sets``); each answer is read strictly, exactly and leniently, with accuracy per set
and per slice as ``k/n`` and a 95% Wilson interval, CheckList-style behaviour checks, the
perplexity of plain text, figures and a one-page HTML report."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
