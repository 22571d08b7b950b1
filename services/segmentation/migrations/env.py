from services.common.migrate import run_env
from services.segmentation.models import metadata

run_env(metadata)
