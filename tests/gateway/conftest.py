from collections.abc import Iterator

import pytest

from tests.gateway.openai_standin import OpenAIStandin
from tests.support.claude import claude_emulator, claude_emulator_session  # noqa: F401  (fixtures)
from tests.support.gateway import gateway_factory  # noqa: F401
from tests.support.moto import aws, moto_server  # noqa: F401
from tests.support.redis import fresh_redis_url, redis_server, redis_url  # noqa: F401
from tests.support.vllm import tiny_model_dir, vllm_factory, vllm_server  # noqa: F401


@pytest.fixture
def standin_factory() -> Iterator:
    started: list[OpenAIStandin] = []

    def start(model: str = "standin", **kw) -> OpenAIStandin:
        s = OpenAIStandin(model, **kw).start()
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()
