"""One status vocabulary (harness/status.py) that records, resume and the tables all read."""

from __future__ import annotations

from harness.status import ALL_STATUSES, DONE_STATUSES, UNSUCCESSFUL_STATUSES, Status


def test_the_vocabulary_and_what_resume_skips():
    assert ALL_STATUSES == ("success", "failed", "diverged", "oom", "cancelled")
    # diverged and oom are results about the method (done); failed and cancelled are rerun
    assert DONE_STATUSES == ("success", "diverged", "oom")
    assert not Status.FAILED.done and not Status.CANCELLED.done and Status("oom").done
    assert UNSUCCESSFUL_STATUSES == tuple(s for s in ALL_STATUSES if s != "success")
    assert Status.SUCCESS == "success"  # compares equal to the text a record holds


def test_a_specs_key_is_its_records_key():
    from harness.pipeline.run_record import base_record
    from harness.records.record import KEY_FIELDS
    from harness.spec import RunSpec

    spec = RunSpec(suite="glue", task="rte", adapter="lora", model="minilm-l6", preset="cpu", seed=7)
    assert spec.key == base_record(spec)["key"] and tuple(spec.key) == KEY_FIELDS


def test_train_settings_declare_their_flag_and_loop_role():
    from harness.cli.parser import TRAIN_OVERRIDES, build_parser
    from harness.pipeline.load import LOOP_ONLY_FIELDS
    from harness.spec import loop_only_fields, train_override_flags

    flags = train_override_flags()
    assert TRAIN_OVERRIDES == tuple(flags) and LOOP_ONLY_FIELDS == loop_only_fields()
    assert {"max_train_samples", "max_eval_samples", "max_steps", "limit", "lr"} <= set(flags)
    # a data budget changes the loaded data, so it must never be loop-only (the load cache keys on it)
    assert not {"max_train_samples", "max_eval_samples", "max_length", "batch_size"} & LOOP_ONLY_FIELDS
    help_text = build_parser().format_help() + "".join(
        a.format_help() for a in build_parser()._subparsers._group_actions[0].choices.values())
    for name, text in flags.items():
        assert "--" + name.replace("_", "-") in help_text and text.split()[0] in help_text
