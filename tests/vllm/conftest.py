from tests.support.redis import redis_server, redis_url  # noqa: F401,E402  (fixtures)
from tests.support.vllm import tiny_model_dir, vllm_factory, vllm_server  # noqa: F401  (fixtures)
