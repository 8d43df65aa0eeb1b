"""Write the per-subject MMLU and per-task BBH YAMLs (run after changing the lists in ie_utils)."""

from __future__ import annotations

from pathlib import Path

from ie_utils import BBH_TASKS, MMLU_SUBJECTS

HERE = Path(__file__).parent


def main() -> None:
    for subject in MMLU_SUBJECTS:
        words = subject.replace("_", " ")
        (HERE / f"ie_mmlu_{subject}.yaml").write_text(
            "include: _mmlu_template_yaml\n"
            f"task: ie_mmlu_{subject}\n"
            "dataset_kwargs:\n"
            f"  subject: {subject}\n"
            f'description: "The following are multiple choice questions (with answers) about {words}.\\n\\n"\n',
            encoding="utf-8",
        )
    for task in BBH_TASKS:
        (HERE / f"ie_bbh_{task}.yaml").write_text(
            f"include: _bbh_template_yaml\ntask: ie_bbh_{task}\ndataset_kwargs:\n  bbh_task: {task}\n", encoding="utf-8"
        )


if __name__ == "__main__":
    main()
