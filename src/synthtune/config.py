"""Typed parameter blocks: one schema per ``parameters_<pipeline>.yml`` block, all here.

:func:`check_parameters` parses every block a run's parameters hold (the Kedro hook in
``synthtune.hooks`` calls it before the first node, so nothing is written first). A wrong
type, an out-of-range value or an unknown key fails at once with the key path, the value and
what is allowed (pydantic does the checking; :func:`parse` words the message). The field
descriptions are the parameter reference: ``python -m synthtune.config`` prints it.
Checks that need more than the parameters (does the task have this format, is this a
wordfreq language, does a target module exist) stay with the nodes that know.
"""

import os
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from synthtune import profiles

Schema = TypeVar("Schema", bound=BaseModel)


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _inside_project(path: str) -> str:
    """A relative path may not climb out of the project (``../x``); an absolute path is the
    user's explicit choice and is kept."""
    if not os.path.isabs(path) and os.path.normpath(path).split(os.sep)[0] == os.pardir:
        raise ValueError(f"relative path {path!r} leads outside the project; give an absolute path to write there")
    return path


PositiveInt = Annotated[int, Field(ge=1)]
#: A path from the parameters: relative to the project root and inside it, or absolute.
ProjectPath = Annotated[str, AfterValidator(_inside_project)]
Share = Annotated[float, Field(ge=0, le=1)]


class _Switch(_Block):
    """A curation step."""

    enabled: bool = Field(default=True, description="false skips this curation step")


# --- generation ---------------------------------------------------------------------------
class SubskillSpec(_Block):
    rows: int = Field(ge=0, description="exercises to make (0: none)")
    words: list[PositiveInt] = Field(min_length=2, max_length=2, description="[lo, hi] words per exercise")
    top_n: PositiveInt | None = Field(
        default=None, description="also practise the language's top_n most frequent words (wordfreq)"
    )
    top_n_share: Share = Field(
        default=1.0, description="with top_n: the share of exercise words dealt from them (the rest: the profile's)"
    )
    capitalise: Share = Field(default=0.0, description="share of words written with a capital first letter")
    punctuate: Share = Field(default=0.0, description="share of words followed by a mark (. , ! ?)")

    @model_validator(mode="after")
    def _ordered(self) -> "SubskillSpec":
        if self.words[0] > self.words[1]:
            raise ValueError(f"words must be [lo, hi] with lo <= hi, got {list(self.words)}")
        return self


class Vocabulary(_Block):
    """The words strings are drawn from (wordfreq, offline)."""

    language: str = Field(description="a wordfreq language code, e.g. en")
    top_n: PositiveInt = Field(description="most frequent words read before filtering")


class NaiveProfile(_Block):
    """The case study's generator: uniform over its word list, string lengths from two ranges."""

    p_short: Share = Field(description="share of strings drawn from 1..short_max words")
    short_max: PositiveInt = Field(description="longest short string, in words")
    long_max: PositiveInt = Field(description="longest string, in words")

    @model_validator(mode="after")
    def _lengths_ordered(self) -> "NaiveProfile":
        if self.long_max < self.short_max:
            raise ValueError(f"long_max={self.long_max} is below short_max={self.short_max}")
        return self


class BalancedProfile(NaiveProfile):
    """The case study's fix: short words boosted, some strings from a tiny sub-pool (repeats)."""

    boost: dict[int, PositiveInt] = Field(description="word length -> extra copies of such words in the pool")
    p_subpool: Share = Field(description="share of strings drawn from a sub-pool of a few words")
    subpool_max: PositiveInt = Field(description="largest sub-pool, in words")


class UsageProfile(_Block):
    """synthtune's profile, aimed at real text: a mixture of strata."""

    zipf_temperature: float = Field(ge=0, description="word weight = frequency ** temperature")
    short_max: PositiveInt = Field(description="longest string of the short stratum, in words")
    long_max: PositiveInt = Field(description="longest string of the long stratum, in words")
    repeat_max: PositiveInt = Field(description="most copies of one word in a repeats string")
    one_letter_share: Share = Field(description="share of one-letter words in one_letter strings")
    p_sentence_case: Share = Field(description="share of strings written as a sentence (capital, full stop)")
    p_punctuation: Share = Field(description="share of strings with punctuation inside")
    p_non_letter: Share = Field(
        default=0.0, description="share of words written with digits, symbols, capitals or dots (42, &, b4, U.S.A.)"
    )
    strata: dict[str, float] = Field(description="stratum -> mixture weight (normalised)")

    @field_validator("strata")
    @classmethod
    def _known_strata(cls, strata: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(strata) - set(profiles.STRATA))
        if unknown:
            raise ValueError(f"unknown strata {unknown}; allowed: {list(profiles.STRATA)}")
        if any(w < 0 for w in strata.values()) or sum(strata.values()) <= 0:
            raise ValueError(f"weights must be >= 0 and sum to a positive value, got {strata}")
        return strata


class Profiles(_Block):
    """Each profile's parameters (generation.profile picks one)."""

    naive: NaiveProfile
    balanced: BalancedProfile
    usage: UsageProfile


class GenerationParams(_Block):
    """``generation`` in ``conf/base/parameters_generation.yml``."""

    seed: int = Field(description="seeds every draw of the generation pipeline")
    task: str = Field(description="a module of synthtune.tasks: letter_count | char_count")
    profile: str = Field(description="naive | balanced | usage (synthtune.profiles)")
    answer_format: str = Field(
        description="one of the task's formats (letter_count: direct | tally | tally_ordinal | tally_spelled; char_count: direct | spell)"
    )
    n_train: PositiveInt = Field(description="rows drawn for training (before curation)")
    n_test: PositiveInt = Field(description="distinct strings held out, never in train")
    label_noise: float = Field(ge=0, lt=1, description="share of training labels replaced by wrong ones")
    subskills: dict[str, dict[str, SubskillSpec] | None] = Field(
        description="task -> sub-skill -> spec", json_schema_extra={"keys": ["<task>", "<sub-skill>"]}
    )
    vocabulary: Vocabulary
    profiles: Profiles

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, profile: str) -> str:
        if profile not in profiles.PROFILES:
            raise ValueError(f"unknown profile; allowed: {sorted(profiles.PROFILES)}")
        return profile


# --- curation -----------------------------------------------------------------------------
class QualityFilter(_Switch):
    """Drops strings too short, too long or with characters outside a class."""

    min_chars: int = Field(ge=0, description="shorter strings are dropped")
    max_chars: PositiveInt = Field(description="longer strings are dropped")
    allowed: str = Field(description="a regex character class every character must match")


class VerifyLabels(_Switch):
    """Recomputes each label with the task's verifier; a disagreeing row is dropped."""

    keep_noisy: bool = Field(description="keep rows marked label_noisy (label-noise studies)")


class DeduplicateNear(_Switch):
    """Caps near-duplicates (MinHash LSH, or a bag-of-words key for few distinct words)."""

    max_per_key: PositiveInt = Field(description="near-duplicates kept per key or cluster")
    minhash_min_distinct: PositiveInt = Field(description="fewer distinct words: bag-of-words key instead")
    bands: PositiveInt = Field(description="MinHash LSH bands")
    band_rows: PositiveInt = Field(description="MinHash rows per band")
    shingle: PositiveInt = Field(description="word n-grams compared")


class Decontaminate(_Switch):
    """Drops training rows sharing a word n-gram with any evaluation set."""

    ngram: PositiveInt = Field(description="a shared word n-gram with an evaluation set is contamination")


class Balance(_Switch):
    """Caps each stratum's share of the curated rows."""

    by: Literal["n_words", "label"] = Field(description="the column whose strata are capped")
    max_share: float = Field(gt=0, le=1, description="no stratum above this share of the curated rows")


class CurationParams(_Block):
    """``curation`` in ``conf/base/parameters_curation.yml``: steps in the order they run."""

    normalise: _Switch
    quality_filter: QualityFilter
    verify_labels: VerifyLabels
    scrub_pii: _Switch
    deduplicate_exact: _Switch
    deduplicate_near: DeduplicateNear
    decontaminate: Decontaminate
    balance: Balance


# --- validation ---------------------------------------------------------------------------
Severity = Literal["critical", "warning"]  # synthtune.pipelines.validation.nodes.SEVERITIES


class ValidationParams(_Block):
    """``validation`` in ``conf/base/parameters_validation.yml``."""

    stop_on: list[Severity] = Field(description="severities whose failure stops the run")
    severity_overrides: dict[str, Severity] = Field(description="expectation group -> severity")


# --- training -----------------------------------------------------------------------------
class BaseModelSpec(_Block):
    """The model fine-tuning starts from (nothing is downloaded)."""

    source: Literal["gguf", "random", "path"] = Field(
        description="the packaged GGUF, random weights of its architecture (tests), or a local directory"
    )
    gguf_package: str = Field(description="the installed package holding the GGUF file")
    gguf_file: str = Field(description="the GGUF file inside it")
    path: ProjectPath | None = Field(description="a local Hugging Face model directory, with source: path")
    seed: int = Field(description="seeds the random weights, with source: random")
    random_init: dict[str, Any] = Field(description="config overrides, with source: random")

    @model_validator(mode="after")
    def _path_given(self) -> "BaseModelSpec":
        if self.source == "path" and not self.path:
            raise ValueError("training.base_model.source is 'path' but training.base_model.path is empty")
        return self


class LoraSpec(_Block):
    """The peft LoRA adapter (method: lora)."""

    r: PositiveInt = Field(description="adapter rank")
    lora_alpha: float = Field(gt=0, description="scale: the update is multiplied by alpha / r")
    lora_dropout: float = Field(ge=0, lt=1, description="dropout on the adapter's input")
    target_modules: str | list[str] = Field(description="all-linear or module names, e.g. [q_proj, v_proj]")
    use_dora: bool = False
    use_rslora: bool = False
    trainable_tokens: Literal["none", "training_rows"] = Field(
        default="none",
        description="training_rows: also train the embedding (tied to the output head) of every token the "
        "training rows use (peft trainable_token_indices)",
    )


class Curriculum(_Block):
    warmup_share: float = Field(gt=0, le=1, description="the first share of the steps take batches shortest first")


class TrainingValidation(_Block):
    """Rows held out of training, scored as it goes."""

    fraction: float = Field(ge=0, lt=1, description="of the training rows held out (0: none)")
    max_rows: int = Field(ge=0, description="held out at most")
    every_steps: int = Field(ge=0, description="0: only at the end")
    probes: bool = Field(default=False, description="also score the probe set at each validation")
    early_stopping_patience: int = Field(ge=0, description="0: never stop early")
    min_delta: float = Field(ge=0, description="a smaller gain does not count for early stopping")
    restore_best: bool = Field(description="end with the weights of the best validation loss")


class Checkpoint(_Block):
    """Trainer state written during training, to resume a stopped run."""

    dir: ProjectPath = Field(description="where checkpoints are written")
    every_steps: int = Field(ge=0, description="0: only on Ctrl-C")
    keep_last: PositiveInt = Field(description="this run's checkpoints kept")
    resume: bool = Field(description="an unfinished run with the same parameters and data goes on")


class TrainingParams(_Block):
    """``training`` in ``conf/base/parameters_training.yml``."""

    seed: int = Field(description="seeds initialisation, batch order and dropout")
    method: Literal["lora", "full"] = Field(description="a peft LoRA adapter, or every weight")
    device: Literal["auto", "cpu", "cuda"] = Field(description="auto: CUDA when present")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(description="auto: bf16 where the hardware is fast at it")
    system_prompt: str = Field(description="the chat's system message (evaluation must use the same)")
    base_model: BaseModelSpec | None = Field(
        default=None, description="read by prepare_base_model (the training loop is given a loaded model)"
    )
    lora: LoraSpec
    batch_size: PositiveInt = Field(description="rows per batch")
    gradient_accumulation_steps: PositiveInt = Field(description="batches per optimizer step")
    max_batch_tokens: PositiveInt | None = Field(description="a bigger batch runs as micro-batches")
    max_steps: PositiveInt = Field(description="optimizer steps; also the length of the LR schedule")
    max_minutes: float | None = Field(gt=0, description="wall-clock budget (null: none)")
    learning_rate: float = Field(gt=0, description="AdamW's peak rate (linear warm-up, cosine decay)")
    warmup_steps: int = Field(ge=0, description="steps of linear warm-up")
    weight_decay: float = Field(ge=0, description="AdamW weight decay")
    max_grad_norm: float = Field(gt=0, description="gradients are clipped to this norm")
    loss_weighting: Literal["row", "token"] = Field(
        default="token", description="row: every row weighs the same; token: every answer token"
    )
    curriculum: Curriculum | None = Field(default=None, description="null: batches in random order")
    length_bucketing: bool = Field(description="batch rows of similar length together (less padding)")
    answer_only_head: bool = Field(description="run the output head only where the loss needs it")
    fused_optimizer: bool = Field(description="one fused AdamW kernel per step")
    validation: TrainingValidation
    checkpoint: Checkpoint


#: Top-level parameter key -> its schema.
SCHEMAS: dict[str, type[_Block]] = {
    "generation": GenerationParams,
    "curation": CurationParams,
    "validation": ValidationParams,
    "training": TrainingParams,
}


class ModelSettings(_Block):
    """How one model is evaluated."""

    max_rows: int | None = Field(ge=1, description="a seeded sample of this many rows per set part; null: all")
    fast_path: bool = Field(description="score each row teacher-forced first; greedy-decode only the others")
    max_new_tokens: int | None = Field(ge=1, description="a cap on this model's budgets; null: decoding's")


class Models(_Block):
    """The two models scored on every set."""

    tuned: ModelSettings = Field(description="the base model with the fine-tuning merged in")
    base: ModelSettings = Field(description="the base model zero-shot: same prompts, its chat format")


class Decoding(_Block):
    """The new-token budget of a question, read from the question alone (never its label)."""

    margin_tokens: int = Field(ge=0, description="added to the task's bound on a correct answer's tokens")
    min_new_tokens: int = Field(ge=1, description="at least this many (room for a zero-shot model's prose)")
    max_new_tokens: int = Field(ge=1, description="at most this many")
    batch_size: int = Field(ge=1, description="rows decoded together, at most")
    max_batch_tokens: int | None = Field(ge=1, description="rows x (prompt + budget) per batch, at most")
    guess_tokens: int = Field(
        ge=0,
        description="speculative decoding: the task's guessed tokens read per forward pass, across a batch (0: off)",
    )


class Behaviour(_Block):
    """CheckList-style checks: perturbed strings whose count must not change, or change by a known amount."""

    n_strings: int = Field(ge=0, description="strings of the test split to perturb; 0 switches the checks off")
    min_words: int = Field(ge=2, description="only strings of at least this many words (shuffling needs two)")
    max_words: int = Field(ge=2, description="... and at most this many")


class Slices(_Block):
    """Accuracy per slice of the rows' features."""

    min_rows: int = Field(ge=1, description="worst slices are ranked among slices with at least this many rows")
    worst: int = Field(ge=1, description="how many worst slices the metrics and the report list")


class Report(_Block):
    """The HTML report."""

    failures_per_set: int = Field(ge=0, description="example failures the HTML report shows per set part")


#: Names an evaluation set cannot have: the behaviour checks' own set (its predictions dataset
#: would be the set's), and the other inputs of check_evaluation_inputs, which takes the sets
#: as keywords.
RESERVED_SET_NAMES = ("behaviour", "task_name", "params")


def check_set_names(names) -> None:
    """Fail unless every evaluation set name is an identifier and none is reserved."""
    bad = [name for name in names if not name.isidentifier()]
    if bad:
        raise ValueError(f"evaluation.sets: set names must be identifiers (letters, digits, _), got {bad}")
    reserved = [name for name in names if name in RESERVED_SET_NAMES]
    if reserved:
        raise ValueError(f"evaluation.sets: {reserved} reserved (not allowed: {list(RESERVED_SET_NAMES)})")


class EvaluationParams(_Block):
    """``evaluation`` in ``conf/base/parameters_evaluation.yml``."""

    sets: dict[str, str] = Field(min_length=1, description="evaluation set name -> catalog dataset")
    report_by: str | None = Field(description="a set holding this column is scored per value of it")
    models: Models
    seed: int = Field(description="seeds the row samples and the behaviour checks")
    device: Literal["auto", "cpu", "cuda"] = Field(description="auto: CUDA when present")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(description="float32 gives the same bytes every run")
    system_prompt: str = Field(description="must match training.system_prompt")
    batch_size: int = Field(ge=1, description="teacher-forced scoring: rows per forward pass")
    max_batch_tokens: int | None = Field(ge=1, description="teacher-forced scoring: padded tokens per forward pass")
    decoding: Decoding
    behaviour: Behaviour
    slices: Slices
    report: Report

    @field_validator("sets")
    @classmethod
    def _names_are_identifiers(cls, sets: dict[str, str]) -> dict[str, str]:
        check_set_names(sets)
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


def check_parameters(params: dict[str, Any]) -> None:
    """Parse every block of ``params`` that has a schema (``SCHEMAS`` and ``evaluation``).

    Raises:
        ValueError: naming every bad key of every block, each with its value and what is allowed.
    """
    problems = []
    for key, schema in {**SCHEMAS, "evaluation": EvaluationParams}.items():
        if key in params:
            try:
                parse(schema, params[key], key)
            except ValueError as error:
                problems.append(str(error))
    if problems:
        raise ValueError("\n".join(problems))


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


def reference() -> str:
    """The parameter reference, one Markdown table per block, from the schemas' JSON Schema
    (the README's "Parameter reference" is this text; a test keeps them equal)."""
    out = []
    for key, schema in {**SCHEMAS, "evaluation": EvaluationParams}.items():
        spec = schema.model_json_schema()
        doc = " ".join((schema.__doc__ or "").replace("``", "`").split())
        out += [f"`{key}`: {doc}", "", "| key | type | description |", "|---|---|---|"]
        out += [f"| `{path}` | {kind} | {text} |" for path, kind, text in _rows(spec, spec.get("$defs", {}), key)]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


_BOUNDS = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<", "minItems": "items >="}


def _rows(spec: dict, defs: dict, prefix: str):
    """(key path, type, description) for each property of a JSON Schema object, depth first."""
    for name, prop in spec.get("properties", {}).items():
        path = f"{prefix}.{name}"
        options = [defs[o["$ref"].split("/")[-1]] if "$ref" in o else o for o in prop.get("anyOf", [prop])]
        nested = next((o for o in options if "properties" in o), None)
        kind = " or ".join(_kind(o) for o in options)
        text = prop.get("description") or " ".join((nested or {}).get("description", "").split())
        if "default" in prop:
            text = f"{text} (default: `{prop['default']}`)".strip()
        yield path, kind.replace("|", "\\|"), text.replace("|", "\\|")
        if nested:
            yield from _rows(nested, defs, path)
        keys = prop.get("keys", [])
        if keys:  # a mapping of free names (e.g. task -> sub-skill -> spec): the spec's fields
            yield from _rows(_mapped(prop, defs, len(keys)), defs, ".".join([path, *keys]))


def _mapped(prop: dict, defs: dict, depth: int) -> dict:
    """The object schema ``depth`` levels of mappings below ``prop``."""
    for _ in range(depth):
        options = [defs[o["$ref"].split("/")[-1]] if "$ref" in o else o for o in prop.get("anyOf", [prop])]
        prop = next(o for o in options if "additionalProperties" in o)["additionalProperties"]
    return defs[prop["$ref"].split("/")[-1]] if "$ref" in prop else prop


def _kind(option: dict) -> str:
    if "enum" in option or "const" in option:
        return " / ".join(f"`{v}`" for v in option.get("enum", [option.get("const")]))
    if "properties" in option:
        return "mapping"
    kind = {"integer": "int", "number": "float", "string": "str", "boolean": "bool", "null": "null"}.get(
        option.get("type"), option.get("type", "any")
    )
    if kind == "array":
        kind = f"list of {_kind(option.get('items', {}))}"
    if kind == "object":
        kind = "mapping"
    bounds = [f"{sign} {option[k]}" for k, sign in _BOUNDS.items() if k in option]
    return f"{kind} ({', '.join(bounds)})" if bounds else kind


if __name__ == "__main__":
    print(reference(), end="")
