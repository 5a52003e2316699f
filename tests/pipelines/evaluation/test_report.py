import json
import re

import matplotlib.pyplot as plt
import pandas as pd

from synthtune.pipelines.evaluation.behaviour import make_behaviour_set
from synthtune.pipelines.evaluation.report import plot_model_comparison, plot_slice_accuracy, render_evaluation_report
from synthtune.pipelines.evaluation.scores import (
    describe_predictions,
    score_behaviour,
    score_parts,
    score_slices,
    summarise_evaluation,
    worst_slices,
)

from .test_behaviour import STUBS, VOCABULARY, answer_with, literal_test_rows
from .test_nodes import PARAMS
from .test_scores import BASE, EXERCISES, PROBES, TEST, TRAIN


def evaluation_outputs():
    described = describe_predictions(
        TRAIN, EXERCISES, "letter_count", tuned_test=TEST, tuned_probes=PROBES, base_test=BASE
    )
    parts, slices = score_parts(described), score_slices(described)
    params = {**PARAMS, "behaviour": {"n_strings": 5, "min_words": 2, "max_words": 12}}
    rows = make_behaviour_set(literal_test_rows(), VOCABULARY, "letter_count", params)
    behaviour = score_behaviour(tuned=answer_with(STUBS["counts_letters"], rows))
    metrics = summarise_evaluation(
        parts, behaviour, {"perplexity": 30.0, "tokens": 10}, {"perplexity": 20.0, "tokens": 10}
    )
    return described, parts, slices, behaviour, metrics


def test_figures_draw_every_part_and_slice_feature():
    _, parts, slices, _, _ = evaluation_outputs()
    fig = plot_model_comparison(parts)
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["test", "probes"]
    # the legend names the models as the report does
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["fine-tuned, strict", "fine-tuned, lenient", "base, strict", "base, lenient"]
    fig = plot_slice_accuracy(slices)
    titles = {ax.get_title() for ax in fig.axes if ax.get_title()}
    assert {"n_words", "unseen_words", "category"} <= titles
    plt.close("all")


def test_report_shows_headline_worst_slices_and_failures_with_completions():
    described, parts, slices, behaviour, metrics = evaluation_outputs()
    worst = worst_slices(slices, "tuned", 1, 5)
    html = render_evaluation_report(metrics, parts, behaviour, slices, worst, described, "letter_count", PARAMS)
    assert html.startswith("<!DOCTYPE html>")
    table = html[html.index('id="headline"') : html.index("</table>", html.index('id="headline"'))]
    # a score wraps, if the page is narrow, between its accuracy and its interval, never inside
    assert '<span class="nw">3/4 = 75.0%</span> <span class="nw">[30.1, 95.4]</span>' in table
    headline = re.sub(r"<[^>]+>", "", table)
    assert headline.count("3/4 = 75.0% [30.1, 95.4]") == 3  # tuned test: strict, exact, lenient
    assert "fine-tuned, exact" in headline
    assert "0/2 = 0.0% [0.0, 65.8]" in headline  # base test, strict: prose is no answer
    assert "1/2 = 50.0%" in headline  # base test, lenient
    assert "be be be be" in html and "<pre>0</pre>" in html  # a failure, with what the model wrote
    assert len(re.findall(r'src="data:image/png;base64,[A-Za-z0-9+/=]{100,}"', html)) == 2  # figures inline
    assert "ratio 1.500" in html


def test_report_escapes_what_models_write():
    described, parts, slices, behaviour, metrics = evaluation_outputs()
    described.loc[1, "completion"] = "<script>alert(1)</script>"
    html = render_evaluation_report(
        metrics, parts, behaviour, slices, worst_slices(slices, "tuned", 1, 5), described, "letter_count", PARAMS
    )
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_failures_are_capped_per_part():
    described, parts, slices, behaviour, metrics = evaluation_outputs()
    many = pd.concat([described] * 20, ignore_index=True)
    html = render_evaluation_report(
        metrics,
        parts,
        behaviour,
        slices,
        worst_slices(slices, "tuned", 1, 5),
        many,
        "letter_count",
        {**PARAMS, "report": {"failures_per_set": 3}},
    )
    section = html[html.index("<h3>test</h3>") : html.index("</table>", html.index("<h3>test</h3>"))]
    assert section.count("<tr>") == 1 + 3


def test_behaviour_checks_switched_off_leave_metrics_and_report_whole():
    params = {**PARAMS, "behaviour": {"n_strings": 0, "min_words": 2, "max_words": 12}}
    rows = make_behaviour_set(literal_test_rows(), VOCABULARY, "letter_count", params)
    assert rows.empty
    behaviour = score_behaviour(tuned=answer_with(STUBS["counts_letters"], rows))
    assert behaviour.empty and {"model", "check", "pass_k", "n"} <= set(behaviour.columns)
    described, parts, slices, _, _ = evaluation_outputs()
    metrics = summarise_evaluation(
        parts, behaviour, {"perplexity": 3.0, "tokens": 10}, {"perplexity": 2.0, "tokens": 10}
    )
    assert metrics["behaviour"] == {}
    json.dumps(metrics, allow_nan=False)  # what the metrics dataset writes
    html = render_evaluation_report(
        metrics, parts, behaviour, slices, worst_slices(slices, "tuned", 1, 5), described, "letter_count", PARAMS
    )
    assert "Off: <code>evaluation.behaviour.n_strings</code> is 0." in html


def test_the_headline_shows_teacher_forced_shares_only_where_the_fast_path_answered():
    described, parts, slices, behaviour, metrics = evaluation_outputs()
    worst = worst_slices(slices, "tuned", 1, 5)

    def headline(parts):
        html = render_evaluation_report(metrics, parts, behaviour, slices, worst, described, "letter_count", PARAMS)
        return re.sub(
            r"<[^>]+>", "", html[html.index('id="headline"') : html.index("</table>", html.index('id="headline"'))]
        )

    assert "teacher-forced" not in headline(parts.assign(teacher_forced=0.0))
    forced = headline(parts.assign(teacher_forced=0.25))
    assert "fine-tuned: teacher-forced / stopped" in forced and "25% / " in forced
