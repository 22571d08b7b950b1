from services.common.migrate import run_env
from services.contacts.models import metadata

run_env(metadata)
