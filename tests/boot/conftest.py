from tests.node.fixtures import completed_lifecycle_actions, imds_factory  # noqa: F401  (fixtures)
from tests.support.moto import aws, moto_server  # noqa: F401  (fixtures)
from tests.support.vllm import tiny_model_dir  # noqa: F401  (fixture)
