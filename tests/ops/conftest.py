from tests.ops.admin_server import admin_api  # noqa: F401  (fixture)
from tests.support.moto import aws, moto_server  # noqa: F401  (fixtures)
