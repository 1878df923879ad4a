import numpy as np
import pytest

from app.routing.text import FEATURE_NAMES, MAX_CHARS, Messages, features, prompt_text


def test_plain_prompt_is_scored_as_is_and_capped():
    assert prompt_text("hello") == "hello"
    assert len(prompt_text("x" * (MAX_CHARS + 50))) == MAX_CHARS


def test_last_user_turn_first_then_previous_user_turn_as_context_system_ignored():
    msgs = [
        {"role": "system", "content": "You are a very long persona prompt."},
        {"role": "user", "content": "Solve x^2 = 4."},
        {"role": "assistant", "content": "x = 2 or x = -2"},
        {"role": "user", "content": "Now for x^3 = 8."},
    ]
    text = prompt_text(msgs)
    assert text.startswith("Now for x^3 = 8.")
    assert "Context: Solve x^2 = 4." in text
    assert "persona" not in text and "x = 2 or" not in text


def test_content_parts_keep_text_only():
    msgs = [{"role": "user", "content": [{"type": "text", "text": "describe"}, {"type": "image_url", "image_url": {"url": "x"}}]}]
    assert prompt_text(msgs) == "describe"


def test_messages_without_a_user_turn_are_an_error():
    with pytest.raises(ValueError, match="role 'user'"):
        prompt_text([{"role": "system", "content": "hi"}])


def test_messages_schema_rejects_bad_roles_and_empty_lists():
    with pytest.raises(ValueError):
        Messages.validate_python([])
    with pytest.raises(ValueError):
        Messages.validate_python([{"role": "wizard", "content": "x"}])


def test_features_count_quantities_and_words():
    f = dict(zip(FEATURE_NAMES, features("Tom has 3 apples and buys 12 more. Then he eats half. How many are left?")))
    assert f["log_numbers"] == pytest.approx(np.log1p(2))
    assert f["log_words"] == pytest.approx(np.log1p(16))
    assert f["log_sentences"] == pytest.approx(np.log1p(3))
    assert f["code"] == 0.0
    assert dict(zip(FEATURE_NAMES, features("def f(x):\n    return x")))["code"] == 1.0
