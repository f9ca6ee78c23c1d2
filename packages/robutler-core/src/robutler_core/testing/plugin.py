"""Built-in plugin: the offline ``test`` model, registered like any skill package's skills."""

from ..hookspecs import hookimpl
from .models import TestModel


@hookimpl
def register_skills(register):  # type: ignore[no-untyped-def]
    register(TestModel, name="test")
