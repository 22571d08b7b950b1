from services.common.migrate import run_env
from services.orders.models import metadata

run_env(metadata)
