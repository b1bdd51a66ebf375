"""Changing a risky call's arguments before approving it, within the action's own validation.

What a person may approve is what the connector will accept: the changes are checked by the
connector's request model for that action (`connectors.base.BaseConnector.requests`), the same
check the call itself passes, so an edit that the connector would refuse is refused here, naming
the field, before anything is decided.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ValidationError

from agents.models import Approval
from conductor.core.errors import ApplicationError, validation_error_from_pydantic
from connectors.base import BaseConnector
from connectors.factory import get_connector


def request_model(tool: str, action: str) -> type[BaseModel] | None:
    """The connector's request model of `tool.action`, or None when it declares none."""
    connector = get_connector(tool)
    if not isinstance(connector, BaseConnector):
        return None  # a connector without its settings: nothing to check an edit against
    return connector.requests.get(action)


def approval_edited_arguments(
    *, approval: Approval, changes: dict[str, Any]
) -> dict[str, Any] | None:
    """The approval's arguments with `changes` applied, as the connector reads them.

    Returns None when the changes leave the call as it was asked (nothing to record). Raises
    ApplicationError `validation_error` with fields under `arguments` (an argument the action
    does not take, or a value its connector refuses), or `not_editable` for an action whose
    connector declares no request model.
    """
    unknown = sorted(set(changes) - set(approval.arguments))
    if unknown:
        raise ApplicationError(
            "Only the action's own arguments can be changed.",
            code="validation_error",
            details=[
                {"field": f"arguments.{name}", "message": "Not an argument of this action."}
                for name in unknown
            ],
        )
    model = request_model(approval.tool, approval.action)
    if model is None:
        raise ApplicationError(
            f"The arguments of {approval.tool}.{approval.action} cannot be changed.",
            code="not_editable",
            details=[{"field": "arguments", "message": "This action cannot be edited."}],
        )
    try:
        # Strict, as the API's own inputs: "5" is not a daily budget.
        edited = model.model_validate({**approval.arguments, **changes}, strict=True)
    except ValidationError as error:
        raise validation_error_from_pydantic(error, prefix=("arguments",)) from None
    as_sent = _canonical(edited.model_dump(mode="json", exclude_unset=True))
    try:
        as_asked = _canonical(model.model_validate(approval.arguments).model_dump(
            mode="json", exclude_unset=True
        ))  # fmt: skip
    except ValidationError:
        as_asked = _canonical(approval.arguments)  # the agent asked for a call it cannot make
    return None if as_sent == as_asked else as_sent


def _canonical(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))
