"""The customer's Jira selection as stored: the projects read and the boards flow and sprint metrics use.

Pure: the registry validates it through the plugin's `selection_model`; project keys follow the
flavour's limits (Cloud keys are shorter than Data Center's).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from dfx_pipelines.platform import identifiers
from dfx_pipelines.platform.registry import SelectionBase


class JiraSelection(SelectionBase):
    projects: list[str] = Field(default_factory=list)
    boards: list[int] = Field(default_factory=list)

    def check(self, endpoint: Mapping[str, Any]) -> None:
        for key in self.projects:  # Cloud keys are shorter than Data Center's: the limit follows the flavour
            identifiers.jira_project_key(key, flavour=endpoint.get("flavour"))
        for board in self.boards:
            identifiers.jira_board_id(board)
