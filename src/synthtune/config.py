"""Typed parameter blocks: the schema of a ``parameters_<pipeline>.yml`` block, checked
before the pipeline does any work.

A wrong type, an out-of-range value or an unknown key fails at once with the key path, the
value and what is allowed (pydantic does the checking; :func:`parse` words the message).
"""

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Schema = TypeVar("Schema", bound=BaseModel)


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ModelSettings(_Block):
    """How one model is evaluated."""

    max_rows: int | None = Field(ge=1, description="a seeded sample of this many rows per set part; null: all")
    fast_path: bool = Field(description="score each row teacher-forced first; greedy-decode only the others")
    max_new_tokens: int | None = Field(ge=1, description="a cap on this model's budgets; null: decoding's")


class Models(_Block):
    tuned: ModelSettings = Field(description="the base model with the fine-tuning merged in")
    base: ModelSettings = Field(description="the base model zero-shot: same prompts, its chat format")


class Decoding(_Block):
    """The new-token budget of a question, read from the question alone (never its label)."""

    margin_tokens: int = Field(ge=0, description="added to the task's bound on a correct answer's tokens")
    min_new_tokens: int = Field(ge=1, description="at least this many (room for a zero-shot model's prose)")
    max_new_tokens: int = Field(ge=1, description="at most this many")
    batch_size: int = Field(ge=1, description="rows decoded together, at most")
    max_batch_tokens: int | None = Field(ge=1, description="rows x (prompt + budget) per batch, at most")


class Behaviour(_Block):
    """CheckList-style checks: perturbed strings whose count must not change, or change by a known amount."""

    n_strings: int = Field(ge=0, description="strings of the test split to perturb; 0 switches the checks off")
    min_words: int = Field(ge=2, description="only strings of at least this many words (shuffling needs two)")
    max_words: int = Field(ge=2, description="... and at most this many")


class Slices(_Block):
    min_rows: int = Field(ge=1, description="worst slices are ranked among slices with at least this many rows")
    worst: int = Field(ge=1, description="how many worst slices the metrics and the report list")


class Report(_Block):
    failures_per_set: int = Field(ge=0, description="example failures the HTML report shows per set part")


class EvaluationParams(_Block):
    """``evaluation`` in ``conf/base/parameters_evaluation.yml``."""

    sets: dict[str, str] = Field(min_length=1, description="evaluation set name -> catalog dataset")
    report_by: str | None = Field(description="a set holding this column is scored per value of it")
    models: Models
    seed: int
    device: Literal["auto", "cpu", "cuda"]
    dtype: Literal["auto", "float32", "bfloat16"]
    system_prompt: str
    batch_size: int = Field(ge=1, description="teacher-forced scoring: rows per forward pass")
    max_batch_tokens: int | None = Field(ge=1, description="teacher-forced scoring: padded tokens per forward pass")
    decoding: Decoding
    behaviour: Behaviour
    slices: Slices
    report: Report

    @field_validator("sets")
    @classmethod
    def _names_are_identifiers(cls, sets: dict[str, str]) -> dict[str, str]:
        bad = [name for name in sets if not name.isidentifier()]
        if bad:
            raise ValueError(f"set names must be identifiers (letters, digits, _), got {bad}")
        return sets

    @model_validator(mode="after")
    def _ranges_are_ordered(self) -> "EvaluationParams":
        if self.decoding.max_new_tokens < self.decoding.min_new_tokens:
            raise ValueError(
                f"evaluation.decoding.max_new_tokens={self.decoding.max_new_tokens} is below "
                f"evaluation.decoding.min_new_tokens={self.decoding.min_new_tokens}"
            )
        if self.behaviour.max_words < self.behaviour.min_words:
            raise ValueError(
                f"evaluation.behaviour.max_words={self.behaviour.max_words} is below "
                f"evaluation.behaviour.min_words={self.behaviour.min_words}"
            )
        return self


def parse(schema: type[Schema], params: dict[str, Any], prefix: str) -> Schema:
    """``params`` checked against ``schema``; a failure names each bad key, its value and
    what is allowed, e.g. ``evaluation.batch_size=0: Input should be greater than or equal to 1``.

    Raises:
        ValueError: listing every problem found.
    """
    try:
        return schema.model_validate(params)
    except ValidationError as error:
        lines = []
        for problem in error.errors():
            if not problem["loc"]:  # a check across keys: its message names them
                lines.append(f"  {problem['msg'].removeprefix('Value error, ')}")
                continue
            path = ".".join([prefix, *(str(part) for part in problem["loc"])])
            shown = "(missing)" if problem["type"] == "missing" else repr(problem.get("input"))
            lines.append(f"  {path}={shown}: {problem['msg']}")
        raise ValueError(f"{prefix}: {len(lines)} invalid parameter(s)\n" + "\n".join(lines)) from None
