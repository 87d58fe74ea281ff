"""key=value settings: routed to one config in one order, parsed by the field's type, with errors
that name the key and what was expected."""

from __future__ import annotations

import pytest

from attentive.recipes import get_recipe, recipes
from attentive.recipes.overrides import parse_overrides, route_overrides
from attentive.train.optim import OptimConfig
from attentive.train.trainer import TrainConfig


def test_values_are_parsed_by_the_type_of_their_field():
    spec = get_recipe("shakespeare-char")
    settings = spec.settings(
        parse_overrides(
            [
                "lr=1e-3",
                "max_steps=1e3",
                "betas=0.9,0.95",
                "max_minutes=none",
                "compile=true",
                "d_model=128",
                "eval_tokens=512",
                "tokenizer=bpe",
                "device=cpu",
                "num_heads=4",
            ]
        )
    )
    assert settings.optim.lr == 0.001 and isinstance(settings.optim.lr, float)
    assert settings.train.max_steps == 1000 and isinstance(settings.train.max_steps, int)
    assert settings.optim.betas == (0.9, 0.95)
    assert settings.train.max_minutes is None and settings.train.compile is True
    assert settings.model.d_model == 128 and settings.data.eval_tokens == 512 and settings.data.tokenizer == "bpe"
    assert settings.explicit >= {"lr", "d_model"}


@pytest.mark.parametrize(
    "item, message",
    [
        ("lr=abc", "lr=abc: expected a float (OptimConfig.lr)"),
        ("max_steps=2.5", "max_steps=2.5: expected an integer (TrainConfig.max_steps)"),
        ("compile=maybe", "compile=maybe: expected true or false (TrainConfig.compile)"),
        ("betas=0.9", "betas=0.9: expected a comma-separated list of floats (OptimConfig.betas)"),
        ("max_minutes=soon", "max_minutes=soon: expected a float or none (TrainConfig.max_minutes)"),
    ],
)
def test_a_value_that_does_not_parse_names_the_key_and_the_type(item, message):
    """``lr=abc`` used to end in "'<=' not supported between instances of 'str' and 'int'"."""
    with pytest.raises(ValueError) as err:
        get_recipe("shakespeare-char").settings(parse_overrides([item]))
    assert str(err.value) == message


def test_an_unknown_key_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown setting 'lrr'; valid settings: .*\blr\b.*\bmax_steps\b"):
        get_recipe("multi30k-de-en").settings({"lrr": "1"})


def test_malformed_and_repeated_settings_are_refused():
    with pytest.raises(ValueError, match="not of the form key=value"):
        parse_overrides(["lr"])
    with pytest.raises(ValueError, match="given twice"):
        parse_overrides(["lr=1", "lr=2"])


def test_one_routing_order_model_data_optimiser_trainer():
    """A name in several configs goes to the first: the same rule for every recipe."""
    routed = route_overrides({"seed": "3", "lr": "0.5"}, [OptimConfig(), TrainConfig()])
    assert routed == [{"lr": 0.5}, {"seed": 3}]
    for spec in recipes().values():  # every recipe exposes the same four configs in that order
        assert [type(c).__name__ for c in (spec.optim, spec.train)] == ["OptimConfig", "TrainConfig"]
        assert hasattr(spec.model, "replace") and spec.data is not None


def test_a_value_that_breaks_a_rule_of_its_config_says_so():
    with pytest.raises(ValueError, match="learning rate must be positive"):
        get_recipe("shakespeare-char").settings({"lr": "-1"})
    with pytest.raises(ValueError, match="keep_checkpoints must be an integer >= 1"):
        get_recipe("shakespeare-char").settings({"keep_checkpoints": "0"})
