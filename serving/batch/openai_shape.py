"""The batch room's OpenAI shape (`/v1/files` + `/v1/batches`): not served yet."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from agentdeploy.serving.http1 import Handler

if TYPE_CHECKING:
    from agentdeploy.serving.batch.room import BatchRoom


class OpenAIBatches:
    def __init__(self, room: BatchRoom) -> None:
        self.room = room

    def exact(self) -> dict[tuple[str, str], Handler]:
        return {}

    def patterns(self) -> list[tuple[str, re.Pattern[str], Handler]]:
        return []
