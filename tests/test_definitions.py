"""Specification of workflow definitions: steps, actions, handlers and guards.

Definitions are validated when the ``class`` statement runs, so every malformed definition
below fails inside ``pytest.raises`` at class creation, naming the workflow and what is wrong.
No database is involved here.
"""

from __future__ import annotations

import pytest

from flowscope.workflows import StepDefinition, Workflow, WorkflowDefinitionError, WorkflowError, guard, on, step


class Review(Workflow):
    draft = step("Being written", submit="pending_review")
    pending_review = step(approve="approved", reject="draft")
    approved = step("Done")

    @on("approve")
    def stamp(self, execution, user, context):
        execution.context_data["approved_by"] = user

    @guard("approve")
    def reviewer_only(self, execution, user):
        return user != execution.assigned_to


class ExtendedReview(Review):
    """Adds a step and an action; everything else is inherited."""

    archived = step()
    approved = step("Done", archive="archived")


class RelabelledReview(Review):
    """Overrides the initial step without changing the graph's shape."""

    draft = step("Being written, autosaved", submit="pending_review", autosave="draft")


# --- steps -----------------------------------------------------------------------------------


def test_first_declared_step_is_the_initial_step():
    assert Review.initial_step == "draft"


def test_steps_keep_declaration_order():
    assert list(Review.steps) == ["draft", "pending_review", "approved"]


def test_steps_without_actions_are_final():
    assert Review.final_steps() == ["approved"]
    assert Review.steps["approved"].is_final
    assert not Review.steps["draft"].is_final


def test_step_knows_its_name_actions_and_description():
    draft = Review.steps["draft"]
    assert isinstance(draft, StepDefinition)
    assert draft.name == "draft"
    assert dict(draft.actions) == {"submit": "pending_review"}
    assert draft.description == "Being written"


def test_step_attribute_on_the_class_is_the_named_step():
    assert Review.pending_review is Review.steps["pending_review"]
    assert Review.pending_review.name == "pending_review"


def test_actions_at_lists_the_actions_declared_at_a_step():
    assert Review.actions_at("pending_review") == ["approve", "reject"]
    assert Review.actions_at("approved") == []


def test_actions_at_an_unknown_step_is_empty():
    assert Review.actions_at("no_such_step") == []


def test_all_actions_is_every_declared_action():
    assert Review.all_actions() == {"submit", "approve", "reject"}


def test_handlers_and_guards_are_registered_by_action():
    assert dict(Review.handlers) == {"approve": ("stamp",)}
    assert dict(Review.guards) == {"approve": ("reviewer_only",)}


def test_several_handlers_of_one_action_are_kept_in_declaration_order():
    class TwoHandlers(Workflow):
        start = step(go="end")
        end = step()

        @on("go")
        def first(self, execution, user, context): ...

        @on("go")
        def second(self, execution, user, context): ...

    assert TwoHandlers.handlers["go"] == ("first", "second")


def test_import_path_is_module_colon_qualname():
    assert Review.import_path() == f"{__name__}:Review"


def test_single_final_step_is_a_valid_workflow():
    class OneStep(Workflow):
        only = step()

    assert OneStep.initial_step == "only"
    assert OneStep.final_steps() == ["only"]


def test_step_target_must_be_a_string():
    with pytest.raises(TypeError, match="'go'"):
        step(go=Review.approved)


# --- validation at class creation --------------------------------------------------------------


def test_workflow_without_steps_is_rejected_naming_the_workflow():
    with pytest.raises(WorkflowDefinitionError, match="no steps") as info:
        class Empty(Workflow):
            pass

    assert info.value.workflow.endswith("Empty")
    assert "Empty" in str(info.value)


def test_action_targeting_an_undefined_step_is_rejected_naming_step_and_target():
    with pytest.raises(WorkflowDefinitionError) as info:
        class Typo(Workflow):
            draft = step(submit="reveiw")
            review = step()

    err = info.value
    assert err.workflow.endswith("Typo")
    assert err.step == "draft"
    assert err.target == "reveiw"
    message = str(err)
    assert "Typo" in message and "'draft'" in message and "'submit'" in message and "'reveiw'" in message


def test_step_unreachable_from_the_initial_step_is_rejected_naming_it():
    with pytest.raises(WorkflowDefinitionError, match="unreachable") as info:
        class Island(Workflow):
            draft = step(submit="done")
            done = step()
            orphan = step(back="draft")

    err = info.value
    assert err.workflow.endswith("Island")
    assert err.step == "orphan"
    assert "'orphan'" in str(err) and "'draft'" in str(err)


def test_handler_for_an_undeclared_action_is_rejected_naming_handler_and_action():
    with pytest.raises(WorkflowDefinitionError) as info:
        class StrayHandler(Workflow):
            draft = step(submit="done")
            done = step()

            @on("publish")
            def publish_it(self, execution, user, context): ...

    message = str(info.value)
    assert info.value.workflow.endswith("StrayHandler")
    assert "handler" in message and "'publish_it'" in message and "'publish'" in message


def test_guard_for_an_undeclared_action_is_rejected_naming_guard_and_action():
    with pytest.raises(WorkflowDefinitionError) as info:
        class StrayGuard(Workflow):
            draft = step(submit="done")
            done = step()

            @guard("sumbit")
            def only_alice(self, execution, user):
                return user == "alice"

    message = str(info.value)
    assert info.value.workflow.endswith("StrayGuard")
    assert "guard" in message and "'only_alice'" in message and "'sumbit'" in message


def test_definition_error_is_a_workflow_error():
    assert issubclass(WorkflowDefinitionError, WorkflowError)


# --- inheritance -----------------------------------------------------------------------------------


def test_subclass_inherits_steps_handlers_and_guards():
    class SameReview(Review):
        pass

    assert list(SameReview.steps) == list(Review.steps)
    assert SameReview.steps == Review.steps
    assert SameReview.initial_step == "draft"
    assert dict(SameReview.handlers) == dict(Review.handlers)
    assert dict(SameReview.guards) == dict(Review.guards)


def test_subclass_can_add_steps_and_actions():
    assert list(ExtendedReview.steps) == ["draft", "pending_review", "approved", "archived"]
    assert ExtendedReview.actions_at("approved") == ["archive"]
    assert ExtendedReview.final_steps() == ["archived"]
    assert ExtendedReview.initial_step == "draft"


def test_subclass_does_not_change_its_parent():
    assert list(Review.steps) == ["draft", "pending_review", "approved"]
    assert Review.final_steps() == ["approved"]


def test_subclass_overriding_a_step_keeps_its_position():
    assert list(RelabelledReview.steps) == ["draft", "pending_review", "approved"]
    assert RelabelledReview.initial_step == "draft"
    assert RelabelledReview.actions_at("draft") == ["submit", "autosave"]


def test_subclass_is_validated_too():
    with pytest.raises(WorkflowDefinitionError) as info:
        class BrokenReview(Review):
            approved = step(reopen="reopened")

    assert info.value.step == "approved"
    assert info.value.target == "reopened"
