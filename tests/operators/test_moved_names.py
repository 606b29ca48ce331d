"""Names that moved out of `qscope.operators` keep working from their old import paths, with a DeprecationWarning."""

import importlib

import pytest

import qscope.operators

# (old module, old name) -> (new module, attribute path there)
MOVED = {
    ("qscope.operators", "SeedModel"): ("qscope.seed_model", "SeedModel"),
    ("qscope.operators", "SeedSignatures"): ("qscope.seed_model", "SeedSignatures"),
    ("qscope.operators", "background_idf"): ("qscope.seed_model", "background_idf"),
    ("qscope.operators", "background_sample"): ("qscope.seed_model", "background_sample"),
    ("qscope.operators", "fit_seed_classifier"): ("qscope.seed_model", "fit_seed_classifier"),
    ("qscope.operators", "Provenance"): ("qscope.provenance", "Provenance"),
    ("qscope.operators", "add_provenance"): ("qscope.provenance", "add_provenance"),
    ("qscope.operators", "load_index"): ("qscope.index", "SignatureIndex.load"),
    ("qscope.operators", "as_table"): ("qscope.operators.base", "as_table"),
    ("qscope.operators", "load_model_and_sae"): ("qscope.operators.base", "load_model_and_sae"),
    ("qscope.operators", "finalize_shards"): ("qscope.operators.writer", "finalize_shards"),
    ("qscope.operators", "is_complete"): ("qscope.operators.writer", "is_complete"),
    ("qscope.operators", "mark_complete"): ("qscope.operators.writer", "mark_complete"),
    ("qscope.operators", "write_table_atomic"): ("qscope.operators.writer", "write_table_atomic"),
    ("qscope.operators.mine", "Classify"): ("qscope.operators.classify", "Classify"),
    ("qscope.operators.mine", "background_sample"): ("qscope.seed_model", "background_sample"),
    ("qscope.operators.mine", "background_idf"): ("qscope.seed_model", "background_idf"),
    ("qscope.operators.index", "SeedSignatures"): ("qscope.seed_model", "SeedSignatures"),
    ("qscope.operators.index", "load_index"): ("qscope.index", "SignatureIndex.load"),
    ("qscope.operators.writer", "PROVENANCE_TYPES"): ("qscope.provenance", "PROVENANCE_TYPES"),
    ("qscope.operators.score", "ScoreTargetFeatures"): ("qscope.operators.score_targets", "ScoreTargetFeatures"),
    ("qscope.operators.scoring", "target_scores"): ("qscope.targets", "target_scores"),
    ("qscope.operators.scoring", "target_activations"): ("qscope.targets", "target_activations"),
    ("qscope.operators.scoring", "signature_rows"): ("qscope.targets", "signature_rows"),
}


def _resolve(module: str, path: str):
    obj = importlib.import_module(module)
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


@pytest.mark.parametrize(("old", "new"), list(MOVED.items()), ids=lambda x: ".".join(x))
def test_old_import_path_warns_and_returns_the_moved_name(old, new):
    old_module, name = old
    module = importlib.import_module(old_module)
    with pytest.warns(DeprecationWarning, match=f"{old_module}.{name} is deprecated: use {new[0]}.{new[1]}"):
        obj = getattr(module, name)
    assert obj == _resolve(*new)


def test_from_import_of_a_moved_name_warns():
    with pytest.warns(DeprecationWarning, match="qscope.operators.mine.Classify"):
        from qscope.operators.mine import Classify
    from qscope.operators.classify import Classify as moved

    assert Classify is moved


def test_package_exports_operators_only():
    from qscope.operators import Operator

    for name in qscope.operators.__all__:
        obj = getattr(qscope.operators, name)
        # the operators, plus what builds one: the base class and its two settings types
        assert (isinstance(obj, type) and issubclass(obj, Operator)) or name in ("ModelSpec", "Resources"), name


def test_unknown_names_still_raise_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'NoSuchOperator'"):
        qscope.operators.NoSuchOperator  # noqa: B018
