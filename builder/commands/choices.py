"""click parameter types whose choices come from the data files."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    _Choice = click.Choice[str]
else:  # click.Choice is generic from click 8.2 on; pyproject allows 8.1
    _Choice = click.Choice


class FrameworkChoice(_Choice):
    """The frameworks of the data folder (builder/data/*.yaml), read when click first needs
    them: importing the command modules (every `mlbuild --help`) reads no data."""

    def __init__(self) -> None:
        super().__init__(())

    @property
    def choices(self) -> tuple[str, ...]:
        from builder.matrix import framework_names

        return framework_names()

    @choices.setter
    def choices(self, _: tuple[str, ...]) -> None:
        """click.Choice.__init__ assigns the list; the data decides it."""
