"""Resuming a sweep from its file: only samples drawn with the same settings and prompt are reused, detectors
are re-applied to the stored texts, and a mixed resume is refused naming what differs."""

import json

import pytest

from diffamp.common import detectors
from diffamp.common.seeds import derive_seed
from diffamp.common.sweep import SweepPrompt, SweepRecord, SweepSettings
from diffamp.sweep_file import SettingsMismatch, SweepFile

PROMPTS = [SweepPrompt("a", "hello"), SweepPrompt("b", "the quick")]
SETTINGS = SweepSettings(alphas=(0.0, 1.0), n=3, seed=5, temperature=1.0, max_new_tokens=8)


def _record(prompt_id, alpha, index, text, settings=SETTINGS):
    return SweepRecord(prompt_id=prompt_id, alpha=alpha, index=index, seed=derive_seed(settings.seed, prompt_id, alpha),
                       text=text, token_ids=(1, 2), finish_reason="stop", detectors=(), logprob_after=-1.0,
                       logprob_before=-2.0, logprob_sampled=-1.5)


def _write(path, records, settings=SETTINGS, prompts=PROMPTS):
    with SweepFile(str(path)).open_for_append(settings, prompts) as f:
        for r in records:
            f.write(json.dumps(r.to_json()) + "\n")


def test_resume_reuses_matching_samples_and_reapplies_detectors(tmp_path):
    path = tmp_path / "s.jsonl"
    _write(path, [_record("a", 0.0, 0, "I dream of escaping"), _record("b", 1.0, 2, "fine")])
    dream = detectors.substring("dream", "dream")
    loaded = SweepFile(str(path)).load(SETTINGS, PROMPTS, [dream])
    assert set(loaded) == {("a", "logits", 0.0, 0), ("b", "logits", 1.0, 2)}
    assert loaded[("a", "logits", 0.0, 0)].detectors == ("dream",) and loaded[("b", "logits", 1.0, 2)].detectors == ()
    more = SweepSettings(**{**SETTINGS.__dict__, "alphas": (0.0, 1.0, 2.0), "n": 10})
    assert len(SweepFile(str(path)).load(more, PROMPTS, [])) == 2  # more alphas and a larger n are fine


@pytest.mark.parametrize("change", [{"temperature": 0.7}, {"top_p": 0.9}, {"top_k": 5}, {"max_new_tokens": 9},
                                    {"min_new_tokens": 2}, {"stop": ("\n",)}, {"seed": 6}])
def test_a_resume_with_other_sampling_settings_is_refused_naming_the_field(tmp_path, change):
    path = tmp_path / "s.jsonl"
    _write(path, [_record("a", 0.0, 0, "x")])
    other = SweepSettings(**{**SETTINGS.__dict__, **change})
    (name,) = change
    with pytest.raises(SettingsMismatch, match=f"sampled with {name} = .*this sweep asks for"):
        SweepFile(str(path)).load(other, PROMPTS, [])


def test_a_changed_prompt_under_the_same_id_is_refused(tmp_path):
    path = tmp_path / "s.jsonl"
    _write(path, [_record("a", 0.0, 0, "x")])
    for changed in (SweepPrompt("a", "goodbye"), SweepPrompt("a", "hello", system_prompt="be brief"),
                    SweepPrompt("a", "hello", raw=True)):
        with pytest.raises(SettingsMismatch, match="prompt 'a' is not the prompt stored under that id"):
            SweepFile(str(path)).load(SETTINGS, [changed, PROMPTS[1]], [])
    assert SweepFile(str(path)).load(SETTINGS, PROMPTS + [SweepPrompt("c", "new")], [])  # new prompts are fine


def test_new_prompts_get_their_fingerprints_recorded(tmp_path):
    path = tmp_path / "s.jsonl"
    _write(path, [_record("a", 0.0, 0, "x")])
    _write(path, [_record("c", 0.0, 0, "y")], prompts=PROMPTS + [SweepPrompt("c", "new")])
    with pytest.raises(SettingsMismatch, match="prompt 'c'"):
        SweepFile(str(path)).load(SETTINGS, [SweepPrompt("c", "changed")], [])


def test_a_file_without_a_header_is_not_mixed_in(tmp_path):
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps(_record("a", 0.0, 0, "x").to_json()) + "\n")
    with pytest.raises(SettingsMismatch, match="not a diffamp sweep file"):
        SweepFile(str(path)).load(SETTINGS, PROMPTS, [])


def test_stop_strings_leave_the_importance_estimate_exact():
    """Stopping depends only on the tokens, the same rule under both distributions; filters cut support."""
    assert SweepSettings(alphas=(1.0,), n=1, stop=("\n",)).estimate_is_exact
    assert SweepSettings(alphas=(1.0,), n=1, temperature=0.7).estimate_is_exact
    for change in ({"top_p": 0.9}, {"top_k": 3}, {"min_new_tokens": 2}, {"temperature": 0.0}):
        assert not SweepSettings(alphas=(1.0,), n=1, **change).estimate_is_exact


def test_re2_detectors_take_linear_time_on_a_catastrophic_pattern():
    import time

    catastrophic = detectors.regex("bad", r"(a+)+$")
    started = time.perf_counter()
    assert not catastrophic("a" * 200_000 + "b")
    assert time.perf_counter() - started < 0.5
    with pytest.raises(ValueError, match="not a valid RE2 regular expression"):
        detectors.regex("backref", r"(a)\1")
