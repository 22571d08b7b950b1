from services.common.migrate import run_env
from services.interactions.models import metadata

run_env(metadata)
