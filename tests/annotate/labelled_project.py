"""A small project labelled through the real services by named workers with known answers.

Used by the agreement report, API and command tests. Items (stage 1, overlap 3), answers of ann, bob
and cat (category keys; [] = safe):

    item  ann                  bob          cat                     settles as
    i1    []                   []           []                      safe          (shares a prompt with i2)
    i2    [self_harm]          [self_harm]  [self_harm]             self_harm     gold: [self_harm]
    i3    [violence]           [violence]   []                      violence
    i4    []                   [privacy]    []                      safe          gold: []
    i5    [violence,self_harm] [violence]   [violence]              violence
    i6    [privacy]            []           [privacy, violence]     privacy
    i7    skipped              []           skipped                 (one label: in progress)
    i8    [self_harm]          [violence]   []                      needs adjudication

i1 and i2 settle, so their prompt gets a stage-2 response pair (qa_a = i1, safe; qa_b = i2, unsafe):
ann says better = 0, bob 1, cat 0 (canonical order), and all say safer = 0 (the invariant forces it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from annotate.assignment import assignment_claim, assignment_skip, label_submit
from annotate.gold import gold_stage1_set
from annotate.models import Project, QAPair, Stage
from tests.factories import PromptFactory, QAPairFactory, Stage1WorkItemFactory, UserFactory

VIOLENCE = "violence,aiding_and_abetting,incitement"
SELF_HARM = "self_harm"
PRIVACY = "privacy_violation"

ANSWERS: dict[str, dict[str, list[str] | None]] = {
    # None = skip the item.
    "ann": {
        "i1": [], "i2": [SELF_HARM], "i3": [VIOLENCE], "i4": [], "i5": [VIOLENCE, SELF_HARM],
        "i6": [PRIVACY], "i7": None, "i8": [SELF_HARM],
    },
    "bob": {
        "i1": [], "i2": [SELF_HARM], "i3": [VIOLENCE], "i4": [PRIVACY], "i5": [VIOLENCE],
        "i6": [], "i7": [], "i8": [VIOLENCE],
    },
    "cat": {
        "i1": [], "i2": [SELF_HARM], "i3": [], "i4": [], "i5": [VIOLENCE],
        "i6": [PRIVACY, VIOLENCE], "i7": None, "i8": [],
    },
}  # fmt: skip
STAGE2_BETTER = {"ann": 0, "bob": 1, "cat": 0}
GOLD = {"i2": [SELF_HARM], "i4": []}


@dataclass
class LabelledProject:
    project: Project
    workers: dict[str, Any]
    items: dict[str, QAPair] = field(default_factory=dict)

    def name_of(self, qa_pair_id: int) -> str:
        return next(name for name, qa in self.items.items() if qa.pk == qa_pair_id)


def label_all(project: Project, worker: Any, answers: dict[int, list[str] | None]) -> None:
    """Claim until nothing is left, answering (or skipping) each item as `answers` says."""
    while True:
        lease = assignment_claim(project=project, worker=worker, stage=Stage.CLASSIFY)
        if lease is None:
            return
        answer = answers[lease.work_item.qa_pair_id]
        if answer is None:
            assignment_skip(assignment=lease, reason="not sure")
        else:
            label_submit(assignment=lease, payload={"categories": answer})


def rank_all(project: Project, worker: Any, better: int, safer: int) -> int:
    """Answer every stage-2 task this worker gets, in canonical order; how many were answered."""
    done = 0
    while (lease := assignment_claim(project=project, worker=worker, stage=Stage.RANK)) is not None:
        flip = 1 if lease.swapped else 0  # the worker answers in the order shown
        label_submit(
            assignment=lease, payload={"better_response_id": better ^ flip, "safer_response_id": safer ^ flip}
        )
        done += 1
    return done


def build(project: Project) -> LabelledProject:
    project.gold_rate = 0.0
    project.gold_min_items = 2
    project.gold_accuracy_threshold = 0.7
    project.save()
    shared_prompt = PromptFactory(project=project)
    built = LabelledProject(
        project=project, workers={name: UserFactory(username=name) for name in ("ann", "bob", "cat")}
    )
    for n in range(1, 9):
        prompt = shared_prompt if n <= 2 else PromptFactory(project=project)
        qa = QAPairFactory(prompt=prompt, response=f"answer {n}")
        Stage1WorkItemFactory(qa_pair=qa)
        built.items[f"i{n}"] = qa
    for name, categories in GOLD.items():
        gold_stage1_set(qa_pair=built.items[name], categories=categories, source="expert")
    for name, worker in built.workers.items():
        label_all(project, worker, {built.items[item].pk: answer for item, answer in ANSWERS[name].items()})
    for name, worker in built.workers.items():
        assert rank_all(project, worker, better=STAGE2_BETTER[name], safer=0) == 1
    return built
