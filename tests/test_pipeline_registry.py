from synthtune.pipeline_registry import STAGES, register_pipelines


def test_registry_has_each_stage_full_default_and_export():
    pipelines = register_pipelines()
    assert set(pipelines) == {*STAGES, "full", "__default__", "export"}
    assert pipelines["__default__"] is pipelines["full"]
    assert pipelines["export"].inputs() == {"base_model", "fine_tuned"}  # runs on what training wrote


def test_full_is_exactly_the_five_stages():
    pipelines = register_pipelines()
    stage_nodes = {n.name for stage in STAGES for n in pipelines[stage].nodes}
    assert {n.name for n in pipelines["full"].nodes} == stage_nodes
    assert len(stage_nodes) == sum(len(pipelines[s].nodes) for s in STAGES)  # no node in two stages


def test_every_node_has_a_verb_noun_name_in_its_stages_namespace():
    pipelines = register_pipelines()
    for stage in [*STAGES, "export"]:
        for node in pipelines[stage].nodes:
            namespace, _, name = node.name.partition(".")
            assert namespace == stage == node.namespace, node.name  # kedro-viz draws each stage as a group
            assert name.replace("_", "").isalpha() and "_" in name, node.name


def test_namespaces_leave_dataset_and_parameter_names_alone():
    from synthtune.pipelines import generation

    plain = generation.create_pipeline()
    assert register_pipelines()["generation"].inputs() == plain.inputs()  # params:generation... included
    assert register_pipelines()["generation"].all_outputs() == plain.all_outputs()


def test_stages_connect_in_order():
    pipelines = register_pipelines()
    produced = set()
    for stage in STAGES:
        free = {i for i in pipelines[stage].inputs() if not i.startswith("params:")}
        assert free <= produced | {"train_rows_suite", "probe_spec", "cute_sentences", "cute_words"}, (
            stage,
            free - produced,
        )
        produced |= pipelines[stage].all_outputs()
