"""API plumbing shared by every app: one exception handler so services can raise Django errors."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


def _validation_detail(exc: DjangoValidationError) -> Any:
    if hasattr(exc, "error_dict"):
        return exc.message_dict
    return {"detail": exc.messages[0] if len(exc.messages) == 1 else exc.messages}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """A Django ValidationError raised by a service becomes a 400 with its messages."""
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(_validation_detail(exc))
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    return drf_exception_handler(exc, context)


class AutoSchema(SpectacularAutoSchema):
    """Names nested serializers after their view (NextTaskApi.InputSerializer -> NextTaskInput).

    House style nests an Input/Output serializer in each view; without this every one of them would
    become the same "Input" component and the published schema would describe only one of them.
    """

    def _get_serializer_name(self, serializer: Any, direction: str, bypass_extensions: bool = False) -> str:
        name = super()._get_serializer_name(serializer, direction, bypass_extensions)
        serializer_class = serializer if isinstance(serializer, type) else type(serializer)
        outer = serializer_class.__qualname__.rpartition(".")[0]
        if outer and "<locals>" not in outer:
            prefix = outer.split(".")[-1].removesuffix("Api").removesuffix("View")
            if not name.startswith(prefix):
                name = prefix + name
        return name
